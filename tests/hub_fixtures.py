"""Shared fixtures of the Hub tests (test_hub.py, test_finetune.py): a Hub double on loopback, made-up papers,
and one tiny model trained and pushed through the real CLI, once per session.

Loaded with `pytest_plugins = ["hub_fixtures"]` so that session fixtures are shared between the modules.
Every client step runs in a subprocess: `huggingface_hub` reads `HF_ENDPOINT` when it is imported, and the
test process imported it long ago with the public endpoint.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
BASE_REPO = "test-user/tiny-hybrid"
BASE_LABELS = ["cs.AI", "cs.CL", "cs.CV"]
# A model small enough to train in a second or two; the same flags work for fine-tuning except the architecture.
TINY_MODEL = [
    "--embed_dim",
    "16",
    "--num_filters",
    "8",
    "--lstm_hidden",
    "8",
    "--lstm_layers",
    "1",
    "--classifier_hidden_sizes",
    "16",
    "--vocab_size",
    "500",
    "--min_frequency",
    "1",
    "--wide_bigram_buckets",
    "256",
]
TINY_TRAINING = [
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "16",
    "--learning_rate",
    "0.01",
    "--seed",
    "0",
    "--dataloader_pin_memory",
    "false",
]
CLI = [sys.executable, "-m", "hf_hybrid.cli"]
CODE_FILES = {
    "configuration_hybrid_cnn_lstm.py",
    "modeling_hybrid_cnn_lstm.py",
    "layers_hybrid_cnn_lstm.py",
    "loading_hybrid_cnn_lstm.py",
    "folding_hybrid_cnn_lstm.py",
    "tokenization_hybrid_cnn_lstm.py",
    "pipeline_arxiv_classification.py",
    "handler.py",
}

LOG_RECORD = re.compile(r"^(DEBUG|INFO|WARNING) [\w.]+: ")  # the CLI's logging format: "%(levelname)s %(name)s: "

# Words that only papers of one class use, so that even a tiny model learns something; the rest is shared filler.
CLASS_WORDS = {
    "cs.AI": "planning agents reasoning knowledge search logic reinforcement reward policy symbolic",
    "cs.CL": "language translation parsing sentences words corpus dialogue speech grammar text",
    "cs.CV": "images pixels segmentation detection camera video convolutional visual objects scenes",
    "cs.LG": "gradient optimization generalization kernels regression bounds stochastic loss sample overfitting",
    "cs.RO": "robot grasping manipulation locomotion sensors navigation control arm legged odometry",
}
FILLER = "we propose a novel method for the and results show our approach improves on of with".split()


def write_papers(path: Path, labels: list[str], per_class: int, seed: int = 0) -> Path:
    """A CSV of made-up papers (title, abstract, category), `per_class` of each label."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "abstract", "category"])
        for label in labels:
            words = CLASS_WORDS[label].split()
            for _ in range(per_class):
                title = " ".join(rng.choice(words) for _ in range(4)) + " " + rng.choice(FILLER)
                abstract = " ".join(rng.choice(words if rng.random() < 0.5 else FILLER) for _ in range(30))
                writer.writerow([title.capitalize(), abstract.capitalize() + ".", label])
    return path


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class Run:
    """What a finished subprocess left: exit status, its output and how long it ran."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> Run:
        assert self.returncode == 0, f"{self.argv} failed ({self.returncode}):\n{self.stdout}\n{self.stderr[-6000:]}"
        return self

    def error_lines(self) -> list[str]:
        """stderr without the log records of the CLI (`INFO httpx: HTTP Request ...`) and without Python
        warnings that libraries may print while they are imported: what is left is what went wrong."""
        return [
            line
            for line in self.stderr.strip().splitlines()
            if line.strip() and not LOG_RECORD.match(line) and "Warning" not in line and not line.startswith("  ")
        ]


def client_env(server: HubServer, hf_home: Path, token: str | bool = True, threads: int | None = None) -> dict:
    env = server.client_env(hf_home, token=token)
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    if threads is not None:  # processes that run side by side share the cores instead of fighting for them
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(argv: list[str], env: dict, timeout: float = 300) -> Run:
    start = time.monotonic()
    proc = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return Run([str(a) for a in argv], proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def run_side_by_side(jobs: dict[str, tuple[list[str], dict]], timeout: float = 300) -> dict[str, Run]:
    """Runs independent subprocesses at the same time (each one mostly waits on imports); returns them by name."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(run, argv, env, timeout) for name, (argv, env) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def hub_server():
    """The Hub double, shared by the session; it must not have met a request it does not implement."""
    with HubServer() as server:
        yield server
        assert server.unhandled == [], f"client hit endpoints the double lacks: {server.unhandled}"


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory):
    """`hub_home()`: a new, empty HF_HOME (token store, download cache and remote-code modules)."""
    return lambda: tmp_path_factory.mktemp("hf_home")


@dataclass
class TrainedModel:
    folder: Path
    papers: Path
    repo_id: str
    run: Run


@pytest.fixture(scope="session")
def hub_model(hub_server, hub_home, tmp_path_factory) -> TrainedModel:
    """A tiny model trained with `hf-hybrid train ... --push_to_hub` on 3 classes of made-up papers. Do not modify."""
    work = tmp_path_factory.mktemp("base")
    papers = write_papers(work / "papers.csv", BASE_LABELS, per_class=40)
    folder = work / "model"
    result = run(
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
            BASE_REPO,
        ],
        client_env(hub_server, hub_home()),
    )
    result.check()
    return TrainedModel(folder, papers, BASE_REPO, result)
