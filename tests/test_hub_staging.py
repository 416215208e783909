"""Opt-in: train, push to the real staging Hub (https://hub-ci.huggingface.co) and load back by repo id.

Runs only when HF_HYBRID_STAGING_TOKEN holds a write token of the staging Hub (not of huggingface.co);
skipped otherwise. The repo it creates is deleted at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid

import pytest
import torch

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer  # noqa: E402

from fresh_process import without_hf_hybrid  # noqa: E402
from hub_fixtures import BASE_LABELS, CLI, TINY_MODEL, TINY_TRAINING, run, write_papers  # noqa: E402

STAGING_ENDPOINT = "https://hub-ci.huggingface.co"
TOKEN = os.environ.get("HF_HYBRID_STAGING_TOKEN")

pytestmark = pytest.mark.skipif(not TOKEN, reason="set HF_HYBRID_STAGING_TOKEN to push to the staging Hub")

TITLES = ["Planning agents with symbolic reasoning", "Parsing sentences of a speech corpus"]
ABSTRACTS = ["Reinforcement learning agents whose policy uses knowledge search.", "Translation of dialogue text."]

WHOAMI = "from huggingface_hub import whoami; print(whoami()['name'])"
DELETE = "import sys; from huggingface_hub import HfApi; HfApi().delete_repo(sys.argv[1], missing_ok=True)"
# Loads the pushed repo in a process that cannot import hf_hybrid, pinned to the pushed commit.
LOAD = without_hf_hybrid(
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    repo, sha, titles, abstracts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    tokenizer = AutoTokenizer.from_pretrained(repo, revision=sha, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(repo, revision=sha, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits
    classify = pipeline("arxiv-classification", model=repo, revision=sha, trust_remote_code=True)
    label = classify({"title": titles[0], "abstract": abstracts[0]})["label"]
    print(json.dumps({"logits": logits.tolist(), "label": label}))
    """
)


def staging_env(hf_home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=STAGING_ENDPOINT,
        HF_TOKEN=TOKEN,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        PYTHONWARNINGS="ignore",
    )
    return env


def test_push_to_the_staging_hub_then_load_by_repo_id_in_a_fresh_process(tmp_path):
    env = staging_env(tmp_path / "hf_home")
    user = run([sys.executable, "-c", WHOAMI], env, timeout=120).check().stdout.strip().splitlines()[-1]
    repo = f"{user}/hf-hybrid-test-{uuid.uuid4().hex[:10]}"
    papers = write_papers(tmp_path / "papers.csv", BASE_LABELS, per_class=40)
    folder = tmp_path / "model"
    try:
        trained = run(
            [
                *CLI,
                "train",
                "--train_file",
                papers,
                "--output_dir",
                folder,
                *TINY_MODEL,
                *TINY_TRAINING,
                "--push_to_hub",
                "--hub_model_id",
                repo,
            ],
            env,
            timeout=600,
        ).check()
        sha = re.search(r"pushed to \S+/commit/([0-9a-f]{40})", trained.stderr)[1]
        loaded = json.loads(
            run([sys.executable, "-c", LOAD, repo, sha, json.dumps(TITLES), json.dumps(ABSTRACTS)], env, timeout=600)
            .check()
            .stdout.strip()
            .splitlines()[-1]
        )
    finally:
        run([sys.executable, "-c", DELETE, repo], env, timeout=120)

    model = HybridCNNLSTMForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(folder)
    with torch.no_grad():
        expected = model(**tokenizer(TITLES, ABSTRACTS, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=0, rtol=0)
    assert loaded["label"] == model.config.id2label[int(expected[0].argmax())]
