"""The README's and docs' code as a reader pastes it: every ```python block of README.md and docs/*.md runs alone,
in a new Python process, and prints what its comments show; the README's quick trial runs as written.

The blocks run in one folder holding what a reader has after the README's quick trial ("Try it in a minute":
`papers.csv` and the `arxiv-hybrid` model trained on it, made here by running that section's code and commands),
plus `arxiv-multilabel` (the model docs/multi_label.md trains; here a tiny untrained multi-label model of the same
labels' kind), with a Hub double on 127.0.0.1 as the Hub, where `you/arxiv-hybrid` holds the quick trial's model:
the placeholder `<commit>` of the README becomes that repo's commit. Nothing else is changed in a block.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_hybrid import (
    ArxivClassificationPipeline,
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMTokenizer,
)

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
QUICK_TRIAL = "## Try it in a minute"
# A printed dict's keys, as the comments under a block show them: `# {'label': ..., 'scores': {'cs.AI': ...}}`.
SHOWN_KEY = re.compile(r"'([\w.]+)':")


def fenced_blocks(text: str, language: str) -> list[str]:
    return [match.group(2) for match in FENCED.finditer(text) if match.group(1) == language]


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


SNIPPETS = [
    pytest.param(code, id=f"{page.name}:{number}")
    for page in PAGES
    for number, code in enumerate(fenced_blocks(page.read_text(), "python"), start=1)
]


def run(command: list[str], folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def hub():
    with HubServer(user="you") as server:
        yield server


@pytest.fixture(scope="module")
def reader(tmp_path_factory, hub):
    """The reader's folder after the quick trial, the environment the blocks run in, and `you/arxiv-hybrid`'s commit."""
    folder = tmp_path_factory.mktemp("reader")
    env = hub.client_env(tmp_path_factory.mktemp("hf_home"))
    # The console script of this Python first; one thread each, since the suite shares its cores.
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", OMP_NUM_THREADS="1")
    trial = section((ROOT / "README.md").read_text(), QUICK_TRIAL)
    [write_papers] = fenced_blocks(trial, "python")
    script = folder / "write_papers.py"
    script.write_text(write_papers)
    wrote = run([sys.executable, str(script)], folder, env)
    assert wrote.returncode == 0, wrote.stderr[-3000:]
    assert wrote.stdout.strip() == "300 made-up papers written to papers.csv"
    for commands in fenced_blocks(trial, "bash"):
        trained = run(["bash", "-euo", "pipefail", "-c", commands], folder, env)
        assert trained.returncode == 0, trained.stderr[-3000:]
    assert (folder / "arxiv-hybrid" / "model.safetensors").is_file()
    assert '"label": "cs.CV"' in trained.stdout  # the trial's paper is all computer vision topics
    make_multi_label_model(folder / "papers.csv", folder / "arxiv-multilabel")
    pushed = run(["hf-hybrid", "push", "--model", "arxiv-hybrid", "--repo_id", "you/arxiv-hybrid"], folder, env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    return folder, env, hub.revision_sha("you/arxiv-hybrid")


def make_multi_label_model(papers: Path, folder: Path) -> None:
    """A tiny untrained multi-label model with a vocabulary of `papers`, saved as training saves one."""
    with open(papers, newline="") as handle:
        texts = [text for row in csv.DictReader(handle) for text in (row["title"], row["abstract"])]
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(texts, min_frequency=1)
    labels = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]
    config = HybridCNNLSTMConfig(
        vocab_size=len(tokenizer),
        embed_dim=16,
        num_filters=8,
        lstm_hidden=8,
        classifier_hidden_sizes=[16],
        wide_bigram_buckets=256,
        id2label=dict(enumerate(labels)),
        problem_type="multi_label_classification",
        label_thresholds=[0.5] * len(labels),
    )
    model = HybridCNNLSTMForSequenceClassification(config).eval()
    ArxivClassificationPipeline(model=model, tokenizer=tokenizer).save_pretrained(str(folder))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("code", SNIPPETS)
def test_every_python_block_runs_alone_and_prints_what_it_shows(code, reader, tmp_path):
    folder, env, commit = reader
    script = tmp_path / "snippet.py"
    script.write_text(code.replace('"<commit>"', f'"{commit}"'))
    result = run([sys.executable, str(script)], folder, env)
    assert result.returncode == 0, result.stderr[-3000:]
    if "print(" in code:
        assert result.stdout.strip(), "the block prints nothing"
    comments = [line.split("#", 1)[1] for line in code.splitlines() if "#" in line]
    for key in SHOWN_KEY.findall("\n".join(comments)):
        assert f"'{key}':" in result.stdout, f"the block's comment shows {key!r}, its output has none:\n{result.stdout}"


def test_the_snippets_are_found():
    """The pages' code is collected: the README's own blocks among them, the quick trial's first."""
    readme = fenced_blocks((ROOT / "README.md").read_text(), "python")
    assert len(readme) >= 4 and "papers.csv" in readme[0]
    assert len(SNIPPETS) >= len(readme) + 2  # docs/inference.md and docs/multi_label.md have one each
