"""Smoke tests of `scripts/benchmark.py`'s modes on tiny made-up CSVs with a tiny model.

Not a timed test: it checks that every metric is measured and reported, never how fast anything is.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = REPO_ROOT / "scripts" / "benchmark.py"

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import benchmark  # noqa: E402

WORDS = {
    "cs.CL": "language translation parsing corpus speech dialogue tokens grammar".split(),
    "cs.CV": "image pixels segmentation camera detection video depth convolution".split(),
    "cs.LG": "gradient optimization regret kernel bandit generalization loss convergence".split(),
}
COMMON = "we propose a novel method for the task and show results on benchmarks".split()


def write_tiny_csv(path: Path, rows: int = 60, seed: int = 0) -> None:
    rng = random.Random(seed)
    categories = sorted(WORDS)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "abstract", "category"])
        for i in range(rows):
            category = categories[i % len(categories)]
            vocabulary = WORDS[category] + COMMON
            title = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 9))).title()
            abstract = ". ".join(
                " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 14))) for _ in range(rng.randint(2, 5))
            ) + "."
            writer.writerow([title, abstract, category])


@pytest.mark.timeout(180)
def test_perf_mode_smoke(tmp_path):
    data = tmp_path / "tiny.csv"
    write_tiny_csv(data)
    output = tmp_path / "out" / "perf.json"
    command = [
        sys.executable, str(BENCHMARK), "--mode", "perf", "--data", str(data), "--tiny",
        "--batch_size", "8", "--train_steps", "2", "--warmup_steps", "1", "--infer_batches", "2",
        "--latency_calls", "3", "--latency_warmup", "1", "--load_repeats", "1", "--train_rounds", "1",
        "--threads", "1", "--parallel_workers", "--output_json", str(output),
    ]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    report = json.loads(output.read_text())
    assert report["mode"] == "perf"
    assert set(report["metrics"]) == set(benchmark.METRICS)
    for key, metric in report["metrics"].items():
        for field in ("notebook", "hf_hybrid", "ratio"):
            assert isinstance(metric[field], (int, float)) and metric[field] > 0, (key, field, metric[field])
        if metric["target"] is not None:
            assert isinstance(metric["passed"], bool), key
    for key in ("arxiv_classification_pipeline_p50_ms", "arxiv_classification_pipeline_p95_ms",
                "notebook_training_samples_per_s_total_rate", "hf_hybrid_tokenization_papers_per_s_total_rate",
                "hf_hybrid_group_by_length_training_samples_per_s"):
        assert report["extras"][key] > 0, key
    assert len(report["workers"]["train_hf_hybrid_1"]["step_seconds"]) == 2
    assert report["settings"]["rows"] == 60
    assert report["settings"]["class_names"] == sorted(WORDS)
    # Same model size on both sides.
    assert report["extras"]["notebook_params"] > 0
    assert report["extras"]["notebook_vocab_size"] == report["extras"]["hf_hybrid_vocab_size"]
    # The hf-hybrid cold load ran on the code shipped in the folder, not on the installed package.
    assert report["workers"]["load_hf_hybrid_1"]["hf_hybrid_imported_during_load"] is False

    # The Markdown table: a header and one row per metric, each with both values and a ratio.
    lines = proc.stdout.splitlines()
    assert "| Metric | Unit | notebook | hf-hybrid |" in proc.stdout
    for metric in report["metrics"].values():
        row = next((line for line in lines if line.startswith(f"| {metric['label']}")), None)
        assert row is not None, metric["label"]
        assert row.count("|") == 8
    # Result cells only: the header line may say "OMP_WAIT_POLICY PASSIVE".
    assert proc.stdout.count("| PASS |") + proc.stdout.count("| FAIL |") == sum(
        m["target"] is not None for m in report["metrics"].values())


def test_parse_args_defaults_and_tiny():
    args = benchmark.parse_args([])
    assert args.mode == "perf" and args.batch_size == 64 and args.embed_dim == 300
    assert args.data == REPO_ROOT.parent / "shared" / "data" / "arxiv_cs.csv"
    tiny = benchmark.parse_args(["--tiny"])
    assert (tiny.embed_dim, tiny.num_filters, tiny.lstm_hidden, tiny.min_freq) == (16, 8, 8, 1)


def test_rate_and_percentile_helpers():
    assert benchmark.step_durations([1.0, 2.0, 3.0, 5.0], warmup=1) == [1.0, 1.0, 2.0]
    assert benchmark.step_durations([1.0, 2.0, 3.0, 5.0], warmup=2) == [1.0, 2.0]
    rates = benchmark.rates([10, 10, 10], [1.0, 1.0, 3.0])
    assert rates["median"] == pytest.approx(10) and rates["total"] == pytest.approx(6)
    assert benchmark.chunk_bounds(25, 10)[0] == (0, 2) and benchmark.chunk_bounds(25, 10)[-1][1] == 25
    assert sum(stop - start for start, stop in benchmark.chunk_bounds(25, 10)) == 25
    assert benchmark.chunk_bounds(3, 10) == [(0, 1), (1, 2), (2, 3)]
    assert benchmark.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert benchmark.percentile(list(range(101)), 95) == pytest.approx(95)


def test_accuracy_mode_compares_hf_hybrid_with_tfidf_on_one_split(tmp_path):
    from papers import write_papers_csv

    data = write_papers_csv(tmp_path / "papers.csv", n_per_class=30, labels=("cs.AI", "cs.CL", "cs.CV"))
    output = tmp_path / "accuracy.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--mode", "accuracy", "--tiny", "--data", str(data), "--num_train_epochs",
         "2", "--workdir", str(tmp_path / "work"), "--output_json", str(output), "--train_flags", "--recipe notebook"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    training_args = json.loads((tmp_path / "work" / "hf_hybrid_model" / "training_args.json").read_text())
    assert (training_args["recipe"], training_args["lr_scheduler_type"]) == ("notebook", "reduce_lr_on_plateau")
    assert training_args["num_train_epochs"] == 2 and results["hf_hybrid"]["epochs_trained"] == 2
    assert results["test_papers"] == 14  # 15% of each class of 30, rounded by the stratified split
    for side in ("hf_hybrid", "tfidf_linear_svm"):
        scores = results[side]
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["cs_ai_recall"] <= 1 and scores["wall_time_s"] >= 0
    assert results["tfidf_linear_svm"]["accuracy"] > 0.8  # the made-up topics are easy for TF-IDF
    assert "| hf-hybrid (--recipe notebook) |" in result.stdout and "| TF-IDF 1-2 grams + LinearSVC |" in result.stdout
    for side in ("hf_hybrid", "tfidf_linear_svm"):
        matrix = results[side]["confusion_matrix"]
        assert sum(map(sum, matrix)) == 14 and len(results[side]["most_confused_pair"]["pair"]) == 2
    assert (tmp_path / "work" / "hf_hybrid_model" / "model.safetensors").is_file()


def test_onnx_mode_checks_parity_of_both_onnx_engines_on_the_test_split(tmp_path, saved_model_dir, capsys):
    from conftest import TINY_LABELS
    from papers import write_papers_csv

    data = write_papers_csv(tmp_path / "papers.csv", n_per_class=40, labels=tuple(TINY_LABELS.values()))
    output = tmp_path / "onnx.json"
    assert benchmark.main(["--mode", "onnx", "--model", str(saved_model_dir), "--data", str(data), "--batch_size",
                           "8", "--latency_calls", "4", "--latency_warmup", "1", "--workdir", str(tmp_path / "export"),
                           "--output_json", str(output)]) == 0

    report = json.loads(output.read_text())
    assert report["test_papers"] == 18  # the stratified 15% of 3 x 40 papers
    assert list(report["engines"]) == ["pytorch", "onnx_fp32", "onnx_int8"]
    fp32, int8 = report["engines"]["onnx_fp32"], report["engines"]["onnx_int8"]
    assert fp32["max_abs_logit_difference"] < 1e-4
    assert fp32["agreement_with_pytorch"] == 1.0 and fp32["accuracy"] == report["engines"]["pytorch"]["accuracy"]
    assert fp32["parity_passed"] is True
    # int8 is judged by the same rule: agreement and accuracy drop decide, whatever they are for this model.
    assert int8["parity_passed"] == (int8["agreement_with_pytorch"] >= 0.99 and int8["accuracy_drop"] <= 0.005)
    for entry in report["engines"].values():
        assert entry["batch_papers_per_s"] > 0 and 0 < entry["latency_p50_ms"] <= entry["latency_p95_ms"]
    assert (tmp_path / "export" / "model.onnx").is_file() and (tmp_path / "export" / "model_int8.onnx").is_file()
    table = capsys.readouterr().out
    assert "| onnx_fp32 |" in table and "| onnx_int8 |" in table and "PASS" in table


@pytest.mark.timeout(600)
def test_fast_mode_reports_every_engine_side_by_side_with_parity(tmp_path, saved_model_dir, capsys):
    from conftest import TINY_LABELS
    from papers import write_papers_csv

    data = write_papers_csv(tmp_path / "papers.csv", n_per_class=40, labels=tuple(TINY_LABELS.values()))
    output = tmp_path / "fast.json"
    assert benchmark.main(["--mode", "fast", "--model", str(saved_model_dir), "--data", str(data), "--batch_size",
                           "8", "--infer_batches", "2", "--latency_calls", "4", "--latency_warmup", "1", "--profile",
                           "--workdir", str(tmp_path / "work"), "--output_json", str(output)]) == 0

    report = json.loads(output.read_text())
    assert report["test_papers"] == 18
    engines = report["engines"]
    assert list(engines) == ["notebook", "pytorch", "folded_fp32", "folded_bf16", "onnx_fp32"]
    for name in ("folded_fp32", "onnx_fp32"):
        assert engines[name]["max_abs_logit_difference"] < 1e-4 and engines[name]["parity_passed"] is True
    assert engines["folded_bf16"]["parity_passed"] == (engines["folded_bf16"]["agreement_with_pytorch"] >= 0.999)
    for entry in engines.values():
        assert entry["batch_papers_per_s"] > 0 and entry["text_batch_papers_per_s"] > 0
        assert 0 < entry["latency_p50_ms"] <= entry["latency_p95_ms"] and entry["load_s"] > 0
        assert entry["peak_rss_mib"] > 0
    assert set(engines["folded_fp32"]["profile"]) == {"batch of 64", "one paper through the pipeline"}
    table = capsys.readouterr().out
    assert "CPU flags:" in table and "| folded_fp32 |" in table and "PASS" in table


def test_onnx_mode_needs_a_model():
    with pytest.raises(SystemExit, match="--model"):
        benchmark.main(["--mode", "onnx"])


def test_most_confused_pair_counts_both_directions():
    from benchmark_accuracy import most_confused_pair

    matrix = [[50, 9, 1], [2, 40, 0], [3, 0, 45]]  # errors: a<->b 11, a<->c 4, b<->c 0
    pair = most_confused_pair(matrix, ["a", "b", "c"])
    assert pair == {"pair": ["a", "b"], "errors": 11, "share_of_errors": 11 / 15}


def test_profile_mode_splits_a_training_step_into_the_models_parts(tmp_path):
    data = tmp_path / "tiny.csv"
    write_tiny_csv(data)
    output = tmp_path / "profile.json"
    assert benchmark.main(["--mode", "profile", "--data", str(data), "--tiny", "--batch_size", "8", "--train_steps",
                           "3", "--warmup_steps", "1", "--output_json", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["steps"] == 3 and report["seconds_per_step"] > 0
    assert sum(report["parts"].values()) == pytest.approx(1.0)
    for part in ("abstract convolutions", "title BiLSTM", "optimizer (Adam)", "embedding"):
        assert report["parts"][part] > 0, part


def test_operators_are_assigned_to_parts_of_the_step():
    from benchmark_profile import part_of

    assert part_of("aten::convolution_backward") == "abstract convolutions"
    assert part_of("aten::mkldnn_rnn_layer_backward") == "title BiLSTM"
    assert part_of("aten::_fused_adam_") == "optimizer (Adam)"
    assert part_of("aten::embedding_dense_backward") == "embedding"
    assert part_of("aten::addmm") == "linear layers (head, attention, fusion)"
    assert part_of("aten::copy_") == "other"


def test_notebook_mode_replays_the_notebook_on_the_accuracy_split_and_scores_every_epoch(tmp_path):
    from papers import write_papers_csv

    data = write_papers_csv(tmp_path / "papers.csv", n_per_class=30, labels=("cs.AI", "cs.CL", "cs.CV"))
    output = tmp_path / "notebook.json"
    assert benchmark.main(["--mode", "notebook", "--tiny", "--data", str(data), "--num_train_epochs", "2",
                           "--batch_size", "16", "--notebook_vocabulary", "training_split", "--output_json",
                           str(output)]) == 0

    results = json.loads(output.read_text())
    assert results["test_papers"] == 14  # the same split as --mode accuracy
    assert results["class_weights"] == {"cs.AI": 2.0, "cs.CL": 1.0, "cs.CV": 1.0}  # the notebook's, by default
    assert results["vocabulary"] == "training_split"
    assert [row["epoch"] for row in results["epochs"]] == [1, 2]
    for row in results["epochs"]:
        assert 0 <= row["train_accuracy"] <= 1 and 0 <= row["validation_accuracy"] <= 1
        test = row["test"]
        assert sum(map(sum, test["confusion_matrix"])) == 14
        correct = sum(test["confusion_matrix"][i][i] for i in range(3))
        assert test["accuracy"] == pytest.approx(correct / 14)
        assert test["cs_ai_recall"] == pytest.approx(test["confusion_matrix"][0][0] / sum(test["confusion_matrix"][0]))


def test_notebook_vocabulary_leaks_test_words_only_when_asked():
    from benchmark_notebook import notebook_vocabulary

    def part(*texts):
        return {"title": list(texts), "abstract": ["shared words here"] * len(texts)}

    splits = {"train": part("graph learning", "graph learning"), "validation": part("other"),
              "test": part("leaked term", "leaked term")}
    leaky = notebook_vocabulary(splits, "all_papers", max_vocab_size=100, min_freq=2)
    honest = notebook_vocabulary(splits, "training_split", max_vocab_size=100, min_freq=2)
    assert "leaked" in leaky.word2idx and "leaked" not in honest.word2idx
    assert "graph" in honest.word2idx and "shared" in honest.word2idx
