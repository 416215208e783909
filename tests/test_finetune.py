"""Fine-tuning a model pushed to the Hub (by repo id), on the same labels and on a new label set, against the
Hub double on loopback. Both runs go through the real command line, side by side: `hf-hybrid finetune` (which
also pushes the result) and `scripts/finetune.py` (pinned to the base model's commit).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from hf_hybrid import HybridCNNLSTMTokenizer  # noqa: E402

from hub_fixtures import BASE_LABELS, CLI, ROOT, client_env, run_side_by_side, write_papers  # noqa: E402

pytest_plugins = ["hub_fixtures"]

NEW_LABELS = ["cs.LG", "cs.RO"]
FINETUNED_REPO = "test-user/tiny-hybrid-finetuned"
# One epoch at a small learning rate: the weights stay close to the base model's, which the tests check.
FINETUNING = [
    "--num_train_epochs",
    "1",
    "--per_device_train_batch_size",
    "16",
    "--learning_rate",
    "0.001",
    "--seed",
    "0",
    "--dataloader_pin_memory",
    "false",
]


@pytest.fixture(scope="module")
def finetuned(hub_server, hub_home, hub_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("finetune")
    same = write_papers(work / "same_labels.csv", BASE_LABELS, per_class=20, seed=1)
    new = write_papers(work / "new_labels.csv", NEW_LABELS, per_class=30, seed=2)
    sha = hub_server.revision_sha(hub_model.repo_id)
    runs = run_side_by_side(
        {
            "same": (
                [
                    *CLI,
                    "finetune",
                    "--model",
                    hub_model.repo_id,
                    "--train_file",
                    same,
                    "--output_dir",
                    work / "same",
                    *FINETUNING,
                    "--push_to_hub",
                    "--hub_model_id",
                    FINETUNED_REPO,
                ],
                client_env(hub_server, hub_home(), threads=1),
            ),
            "new": (
                [
                    sys.executable,
                    ROOT / "scripts" / "finetune.py",
                    "--model",
                    hub_model.repo_id,
                    "--revision",
                    sha,
                    "--train_file",
                    new,
                    "--output_dir",
                    work / "new",
                    *FINETUNING,
                ],
                client_env(hub_server, hub_home(), threads=1),
            ),
        }
    )
    for result in runs.values():
        result.check()
    return {"same": (work / "same", runs["same"]), "new": (work / "new", runs["new"])}


def id2label(folder) -> dict[str, str]:
    return json.loads((folder / "config.json").read_text())["id2label"]


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def output_layer(state: dict[str, torch.Tensor]) -> str:
    """Name of the head's last Linear layer (the one with one row per label)."""
    return max(
        (k for k in state if k.startswith("classifier.") and k.endswith(".weight") and state[k].dim() == 2),
        key=lambda k: int(k.split(".")[1]),
    ).removesuffix(".weight")


def max_change(before: torch.Tensor, after: torch.Tensor) -> float:
    return (after - before).abs().max().item()


def test_same_labels_keep_the_head_and_continue_from_the_base_weights(finetuned, hub_model):
    folder, _ = finetuned["same"]
    assert id2label(folder) == id2label(hub_model.folder) == {"0": "cs.AI", "1": "cs.CL", "2": "cs.CV"}
    base, tuned = weights(hub_model.folder), weights(folder)
    assert base.keys() == tuned.keys()
    head = output_layer(base)
    assert tuned[f"{head}.weight"].shape == (3, 16)
    for name in (f"{head}.weight", "hybrid.embedding.weight"):
        assert 0 < max_change(base[name], tuned[name]) < 0.05, name  # trained a little, from the base weights


def test_new_label_set_gets_a_fresh_head_on_the_base_encoder(finetuned, hub_model):
    folder, result = finetuned["new"]
    assert id2label(folder) == {"0": "cs.LG", "1": "cs.RO"}
    assert (
        "new label set ['cs.LG', 'cs.RO'] (model had ['cs.AI', 'cs.CL', 'cs.CV']): training a fresh "
        "classification head" in result.stderr
    )
    base, tuned = weights(hub_model.folder), weights(folder)
    head = output_layer(base)
    assert base[f"{head}.weight"].shape == (3, 16) and tuned[f"{head}.weight"].shape == (2, 16)
    assert max_change(base["hybrid.embedding.weight"], tuned["hybrid.embedding.weight"]) < 0.05


def test_fine_tuning_keeps_the_vocabulary_and_says_how_much_is_unknown(finetuned, hub_model):
    base_vocab = HybridCNNLSTMTokenizer.from_pretrained(hub_model.folder).get_vocab()
    for kind, expect_unknown in (("same", False), ("new", True)):
        folder, result = finetuned[kind]
        assert HybridCNNLSTMTokenizer.from_pretrained(folder).get_vocab() == base_vocab, kind
        [line] = [line for line in result.stderr.splitlines() if "<UNK>" in line]
        assert "the base model's vocabulary maps" in line and "of the new words to <UNK>" in line
        percent = float(line.split("maps ")[1].split("%")[0])
        assert (percent > 20) if expect_unknown else (percent == 0), (kind, line)


def test_card_of_a_fine_tuned_model_names_the_base_model_and_unknown_words(finetuned, hub_model):
    for kind in ("same", "new"):
        folder, _ = finetuned[kind]
        card = (folder / "README.md").read_text()
        metadata = yaml.safe_load(card.split("---")[1])
        assert metadata["base_model"] == hub_model.repo_id
        assert f"Fine-tuned from [{hub_model.repo_id}]" in card and "`<UNK>`" in card
        assert metadata["model-index"][0]["results"][0]["metrics"]


def test_fine_tuned_model_is_pushed_with_push_to_hub(finetuned, hub_server, hub_model):
    folder, result = finetuned["same"]
    files = hub_server.files(FINETUNED_REPO)
    assert hub_server.revision_sha(FINETUNED_REPO) in result.stderr  # the logged commit URL
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert {"README.md", "config.json", "tokenizer.json", "training_args.json", "eval_results.json"} <= set(files)
    assert not [name for name in files if name.endswith(".bin") or name.startswith("checkpoint-")]
    assert f"base_model: {hub_model.repo_id}" in files["README.md"].decode()
    assert f'repo = "{FINETUNED_REPO}"' in files["README.md"].decode()
