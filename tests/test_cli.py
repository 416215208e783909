"""The `hf-hybrid` command line: train, evaluate, predict, one-line errors (two processes: test_distributed.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from papers import make_papers, write_papers_csv

from hf_hybrid.cli import main
from hf_hybrid.commands import push as push_command

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_FLAGS = [
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
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "0.01",
    "--seed",
    "0",
    "--disable_tqdm",
    "true",
    "--dataloader_pin_memory",
    "false",
]


def run(command, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("papers")
    return {
        "train": write_papers_csv(folder / "train.csv", n_per_class=40, seed=0),
        "test": write_papers_csv(folder / "test.csv", n_per_class=10, seed=1),
    }


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, files):
    output_dir = tmp_path_factory.mktemp("cli") / "model"
    result = run(
        [
            str(BIN / "hf-hybrid"),
            "train",
            "--train_file",
            str(files["train"]),
            "--test_file",
            str(files["test"]),
            "--output_dir",
            str(output_dir),
            "--num_train_epochs",
            "6",
            *TINY_FLAGS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| accuracy |" in result.stdout  # the test table is printed
    return output_dir


def test_evaluate_prints_the_metrics_training_reported(trained_dir, files, capsys):
    assert main(["evaluate", "--model", str(trained_dir), "--test_file", str(files["test"])]) == 0
    printed = json.loads(capsys.readouterr().out)
    reported = json.loads((trained_dir / "eval_results.json").read_text())["test"]
    assert printed["num_samples"] == 30
    assert printed["accuracy"] == pytest.approx(reported["accuracy"]) and printed["accuracy"] > 0.6
    assert set(printed["per_class_f1"]) == {"cs.AI", "cs.CL", "cs.CV"}


def test_predict_one_paper_and_a_file(trained_dir, files, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained_dir),
                "--title",
                "Segmentation of video scenes",
                "--abstract",
                "We detect pixels in camera images with depth.",
                "--top_words",
                "2",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["label"] == "cs.CV"
    assert len(result["abstract_words"]) == 2 and sum(result["scores"].values()) == pytest.approx(1.0)

    output = tmp_path / "predictions.jsonl"
    assert (
        main(["predict", "--model", str(trained_dir), "--input_file", str(files["test"]), "--output_file", str(output)])
        == 0
    )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    truth = [paper["category"] for paper in make_papers(10, seed=1)]
    assert len(lines) == 30
    assert sum(line["label"] == label for line, label in zip(lines, truth)) > 18


def test_predict_and_evaluate_with_fold_for_inference_give_the_same_results(trained_dir, files, tmp_path, capsys):
    results = {}
    for flags in ([], ["--fold_for_inference"], ["--fold_for_inference", "bfloat16"]):
        output = tmp_path / f"predictions{len(flags)}.jsonl"
        assert (
            main(
                [
                    "predict",
                    "--model",
                    str(trained_dir),
                    "--input_file",
                    str(files["test"]),
                    "--output_file",
                    str(output),
                    *flags,
                ]
            )
            == 0
        )
        assert main(["evaluate", "--model", str(trained_dir), "--test_file", str(files["test"]), *flags]) == 0
        results[len(flags)] = (
            [json.loads(line) for line in output.read_text().splitlines()],
            json.loads(capsys.readouterr().out),
        )
    (plain, plain_metrics), (fast, fast_metrics), (bf16, _) = results[0], results[1], results[2]
    # The labels are the same, so are the label metrics; the probabilities agree up to float32 summation order.
    calibration = ("expected_calibration_error", "log_loss", "brier_score", "mean_confidence")
    assert {k: v for k, v in fast_metrics.items() if k not in calibration} == {
        k: v for k, v in plain_metrics.items() if k not in calibration
    }
    assert [fast_metrics[k] for k in calibration] == pytest.approx([plain_metrics[k] for k in calibration], abs=1e-6)
    assert [line["label"] for line in fast] == [line["label"] for line in plain]
    for fast_line, plain_line in zip(fast, plain):
        assert fast_line["scores"] == pytest.approx(plain_line["scores"], abs=1e-5)
    assert sum(b["label"] == p["label"] for b, p in zip(bf16, plain)) >= 29


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--train_file", "{bad_column}", "--output_dir", "{out}"], "missing column(s) category"),
        (["train", "--train_file", "{empty}", "--output_dir", "{out}"], "has no rows"),
        (["train", "--train_file", "{tiny_class}", "--output_dir", "{out}"], "class 'cs.CV' has only 1 paper"),
        (["train", "--train_file", "{train}", "--output_dir", "{out}", "--class_weights", "cs.XX=2"], "LABEL=WEIGHT"),
        (["predict", "--model", "{out}/absent", "--title", "x"], "error:"),
        (["evaluate", "--model", "{trained}", "--test_file", "{bad_column}"], "missing column(s) category"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(arguments, message, files, trained_dir, tmp_path, capsys):
    bad_column = tmp_path / "bad.csv"
    bad_column.write_text("title,abstract,label\nA,B,cs.AI\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("title,abstract,category\n")
    tiny_class = write_papers_csv(
        tmp_path / "tiny.csv",
        make_papers(5, labels=("cs.AI", "cs.CL")) + [{"title": "t", "abstract": "a", "category": "cs.CV"}],
    )
    values = {
        "bad_column": bad_column,
        "empty": empty,
        "tiny_class": tiny_class,
        "train": files["train"],
        "out": tmp_path / "out",
        "trained": trained_dir,
    }
    assert main([argument.format(**values) for argument in arguments]) == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in stderr
    assert len(errors) == 1 and message in errors[0] and errors[0].startswith(f"hf-hybrid {arguments[0]}: error:")
    assert not (tmp_path / "out" / "model.safetensors").exists()


HEAVY = ("torch", "transformers", "numpy", "datasets", "evaluate", "sklearn", "huggingface_hub", "matplotlib")
# What only training, evaluation and the plots use: one paper's `predict` has no need of them.
TRAINING_ONLY = ("datasets", "evaluate", "sklearn", "matplotlib", "gensim", "hf_hybrid.training", "hf_hybrid.trainer")


def imported_by(argv: list[str]) -> set[str]:
    """The top-level packages and hf_hybrid modules that `hf-hybrid ARGV` imports, run in a new Python process."""
    script = f"""
import json, sys
from hf_hybrid.cli import main
try:
    main({argv!r})
except SystemExit:  # a command's own --help exits
    pass
packages = {{name.split(".")[0] for name in sys.modules}}
print(json.dumps(sorted(packages | {{name for name in sys.modules if name.startswith("hf_hybrid.")}})))
"""
    result = run([sys.executable, "-c", script], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [["--help"], [], ["evaluate", "--help"], ["push", "--help"], ["export", "--help"], ["demo", "--help"]],
    ids=["--help", "no command", "evaluate --help", "push --help", "export --help", "demo --help"],
)
def test_help_imports_neither_torch_nor_transformers(argv):
    """`hf-hybrid --help` and the --help of commands whose flags need no library start without the ML stack."""
    assert imported_by(argv) & set(HEAVY) == set()


def test_import_hf_hybrid_is_light_and_its_names_load_on_first_use():
    script = f"""
import json, sys
import hf_hybrid
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
config = hf_hybrid.HybridCNNLSTMConfig()
from transformers import AutoConfig
registered = type(AutoConfig.for_model(config.model_type)) is hf_hybrid.HybridCNNLSTMConfig
unresolved = [name for name in hf_hybrid.__all__ if getattr(hf_hybrid, name, None) is None]
print(json.dumps([heavy, registered, unresolved, sorted(set(hf_hybrid.__all__) - set(dir(hf_hybrid)))]))
"""
    result = run([sys.executable, "-c", script], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    heavy, registered, unresolved, undiscoverable = json.loads(result.stdout.strip().splitlines()[-1])
    assert heavy == []  # nothing of the ML stack until a name is used
    assert registered  # the first model name used registers the Auto classes
    assert unresolved == [] and undiscoverable == []


def test_one_paper_predict_imports_no_training_code(trained_dir):
    imported = imported_by(["predict", "--model", str(trained_dir), "--title", "Deep networks", "--abstract", "x"])
    assert {"torch", "transformers", "hf_hybrid.model"} <= imported
    assert imported & set(TRAINING_ONLY) == set()


def test_unknown_command_and_usage(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("bug", [ValueError("a bug's message"), KeyError("title_input_ids")])
def test_a_bug_keeps_its_traceback_instead_of_becoming_a_one_line_error(bug, monkeypatch):
    """Only user mistakes (UserError), unreadable files, the Hub and missing extras become one-line errors."""

    def broken(argv):
        raise bug

    monkeypatch.setattr(push_command, "run_push", broken)
    with pytest.raises(type(bug)):
        main(["push", "--model", "x", "--repo_id", "y/z"])


def test_export_has_no_format_flag(capsys):
    """ONNX is the one format `hf-hybrid export` writes: no flag pretends otherwise."""
    with pytest.raises(SystemExit):
        main(["export", "--model", "x", "--format", "onnx"])
    assert "unrecognized arguments: --format onnx" in capsys.readouterr().err


def test_train_script_shares_the_parser_with_every_training_argument():
    result = run([sys.executable, str(REPO / "scripts" / "train.py"), "--help"])
    assert result.returncode == 0
    for flag in (
        "--kernel_sizes",
        "--train_file",
        "--report_to",
        "--push_to_hub",
        "--hub_model_id",
        "--num_train_epochs",
        "--gradient_accumulation_steps",
        "--class_weights",
    ):
        assert flag in result.stdout
