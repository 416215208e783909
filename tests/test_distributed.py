"""Training on two processes on CPU, launched as users launch it (`torchrun`, `accelerate launch`): one job, one
vocabulary and one starting model made by the main process, the papers split between the processes, one complete
output folder; and the launches that cannot work, refused with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from papers import write_multi_label_csv, write_papers_csv

from hf_hybrid import distributed
from hf_hybrid.errors import UserError
from hf_hybrid.output_folder import STAGING_SUFFIX

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = [
    *("--embed_dim", "16", "--num_filters", "8", "--lstm_hidden", "8", "--lstm_layers", "1"),
    *("--classifier_hidden_sizes", "16", "--vocab_size", "500", "--min_frequency", "1"),
    *("--wide_bigram_buckets", "256", "--per_device_train_batch_size", "8", "--learning_rate", "0.01"),
    *("--num_train_epochs", "2", "--seed", "0", "--disable_tqdm", "true"),
]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
# A run's files, whichever its problem type.
MODEL_FILES = {"model.safetensors", "config.json", "tokenizer.json", "README.md", "eval_results.json"}


def run(command, tmp_path):
    # HF_HOME: no accelerate config of this machine's user applies.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def log_lines(result, text: str) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if text in line]


def test_torchrun_runs_the_readme_command_as_one_job(tmp_path):
    """`torchrun --nproc_per_node 2 scripts/train.py ...` as the README gives it: no --use_cpu, no --ddp_backend."""
    output_dir = tmp_path / "ddp"
    train = write_papers_csv(tmp_path / "train.csv", n_per_class=40, seed=0)
    command = [*TORCHRUN, "scripts/train.py", "--train_file", str(train), "--output_dir", str(output_dir)]
    result = run([*command, *TINY_FLAGS], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Learned by the main process alone: once for the held-out run, once for the final fit on all 120 papers of
    # this small table.
    assert len(log_lines(result, "vocabulary: 48 words learned from 84 training papers")) == 1
    assert len(log_lines(result, "words learned from 120 training papers")) == 1
    assert len(log_lines(result, "word vectors (word2vec):")) == 2
    results = json.loads((output_dir / "eval_results.json").read_text())
    # 84 training papers, batches of 8 on each of 2 processes: 5 steps an epoch (10 on one process).
    assert [entry["step"] for entry in results["log_history"] if "train_accuracy" in entry] == [5, 10]
    arguments = json.loads((output_dir / "training_args.json").read_text())
    assert (arguments["use_cpu"], arguments["ddp_backend"]) == (True, "gloo")
    assert MODEL_FILES <= {path.name for path in output_dir.iterdir()}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ddp", "hf", "train.csv"]  # no .partial left
    assert not log_lines(result, "is unchanged")

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True)
    assert model.config.id2label == {0: "cs.AI", 1: "cs.CL", 2: "cs.CV"}


def test_accelerate_launch_multi_gpu_runs_one_job_on_cpu_with_the_wide_fit_shared(tmp_path):
    """A multi-label run: the main process alone fits the wide branch and its out-of-fold logits (L-BFGS), which
    the other process receives."""
    output_dir = tmp_path / "ddp"
    train = write_multi_label_csv(tmp_path / "train.csv", n=120)
    command = [*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", "0"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "scripts/train.py", "--train_file", str(train)]
    command += ["--label_column", "categories", "--problem_type", "multi_label_classification"]
    command += ["--final_fit", "none"]  # one fit of each: the held-out run's
    result = run([*command, "--output_dir", str(output_dir), *TINY_FLAGS], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(log_lines(result, "vocabulary:")) == 1
    assert len(log_lines(result, "wide branch fitted by L-BFGS")) == 1
    assert len(log_lines(result, "wide branch's out-of-fold logits")) == 1
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["wide_fit"]["method"] == "lbfgs" and results["wide_fit"]["out_of_fold"]["folds"] == 3
    train_papers = 84  # 70% of 120
    steps = [entry["step"] for entry in results["log_history"] if "train_accuracy" in entry or "loss" in entry]
    assert steps[:2] == [train_papers // 16, 2 * (train_papers // 16)]
    assert MODEL_FILES <= {path.name for path in output_dir.iterdir()}
    assert not (tmp_path / f"ddp{STAGING_SUFFIX}").exists()


def test_accelerate_launch_that_starts_one_process_is_refused_with_one_line(tmp_path):
    """Without --multi_gpu, accelerate starts several CPU processes only through MPI: it starts this one alone."""
    output_dir = tmp_path / "out"
    train = write_papers_csv(tmp_path / "train.csv", n_per_class=10, seed=0)
    command = [*ACCELERATE, "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    command += [
        "--dynamo_backend",
        "no",
        "scripts/train.py",
        "--train_file",
        str(train),
        "--output_dir",
        str(output_dir),
    ]
    result = run(command, tmp_path)
    assert result.returncode != 0
    assert (
        "hf-hybrid train: error: accelerate launch was asked for several processes but started only this one "
        "(without --multi_gpu it starts several only through MPI, --mpirun_hostfile): use accelerate launch "
        "--multi_gpu --num_processes N, or torchrun --nproc_per_node N, which run on CPU too (gloo)\n"
    ) in result.stderr
    assert not output_dir.exists()


@pytest.fixture
def launched(monkeypatch):
    """`launched(**environment)`: the process environment of a launch, alone (no other launcher's variables)."""
    for name in (
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        distributed.ACCELERATE_LAUNCHED,
        *distributed.MPI_WORLD_SIZE,
    ):
        monkeypatch.delenv(name, raising=False)

    def launch(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)

    return launch


def test_processes_without_gpus_train_on_cpu_with_gloo(launched, monkeypatch):
    launched(WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    monkeypatch.setattr(distributed, "accelerator_available", lambda: False)
    arguments = SimpleNamespace(use_cpu=False, ddp_backend=None)
    distributed.check_launch(arguments)
    assert (arguments.use_cpu, arguments.ddp_backend) == (True, "gloo")
    arguments = SimpleNamespace(use_cpu=False, ddp_backend="mpi")  # another CPU backend, given: kept
    distributed.check_launch(arguments)
    assert (arguments.use_cpu, arguments.ddp_backend) == (True, "mpi")


def test_a_gpu_backend_without_gpus_is_refused(launched, monkeypatch):
    launched(WORLD_SIZE="2", LOCAL_RANK="1")
    monkeypatch.setattr(distributed, "accelerator_available", lambda: False)
    with pytest.raises(UserError) as refusal:
        distributed.check_launch(SimpleNamespace(use_cpu=False, ddp_backend="nccl"))
    assert str(refusal.value) == (
        "--ddp_backend nccl needs GPUs, and this machine has none: leave it out (gloo), or give one of gloo, mpi, ccl"
    )


@pytest.mark.parametrize(
    "environment",
    [{}, {"WORLD_SIZE": "1"}, {distributed.ACCELERATE_LAUNCHED: "no"}, {"WORLD_SIZE": "2", "LOCAL_RANK": "0"}],
    ids=["no launcher", "one torchrun process", "accelerate, one process", "GPUs"],
)
def test_launches_that_work_are_left_as_they_are(launched, monkeypatch, environment):
    launched(**environment)
    monkeypatch.setattr(distributed, "accelerator_available", lambda: True)
    arguments = SimpleNamespace(use_cpu=False, ddp_backend=None)
    distributed.check_launch(arguments)
    assert (arguments.use_cpu, arguments.ddp_backend) == (False, None)


def test_mpi_processes_count_as_launched(launched):
    launched(OMPI_COMM_WORLD_SIZE="4", MASTER_ADDR="127.0.0.1", **{distributed.ACCELERATE_LAUNCHED: "no"})
    assert distributed.launched_processes() == 4
    distributed.check_launch(SimpleNamespace(use_cpu=True, ddp_backend=None))  # not refused
