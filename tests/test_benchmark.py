"""Smoke tests of `scripts/benchmark.py`'s subcommands (speed, onnx, accuracy, stock_tools) on tiny data and tiny
models, and unit tests of what they compute. Figures are not checked: only that each is measured and reported."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = REPO_ROOT / "scripts" / "benchmark.py"

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import benchmark  # noqa: E402
from benchmarks.accuracy import most_confused_pair  # noqa: E402
from benchmarks.common import DEFAULT_DATA, cpu_flags  # noqa: E402
from benchmarks.speed import untrained_model  # noqa: E402

# `hf-hybrid train` flags of a tiny model, as the benchmarks take them
TINY_MODEL = (
    "--embed_dim 16 --num_filters 8 --lstm_hidden 8 --classifier_hidden_sizes 16 8 --min_frequency 1 "
    "--wide_bigram_buckets 256"
)
FAST = ["--batch_size", "8", "--latency_calls", "3", "--latency_warmup", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def papers_csv(tmp_path_factory):
    from conftest import TINY_LABELS
    from papers import write_papers_csv

    return write_papers_csv(
        tmp_path_factory.mktemp("data") / "papers.csv", n_per_class=40, labels=tuple(TINY_LABELS.values())
    )


def test_each_subcommand_takes_only_its_own_flags(capsys):
    speed = benchmark.parse_args(["speed"])
    assert (speed.train_flags, speed.batch_size, speed.split_seed, speed.model) == ("--recipe notebook", 64, 42, None)
    assert speed.data == DEFAULT_DATA == REPO_ROOT.parent / "shared" / "data" / "arxiv_cs.csv"
    assert benchmark.parse_args(["accuracy"]).train_flags == ""
    for argv in (
        ["onnx"],
        ["accuracy", "--model", "x"],
        ["accuracy", "--batch_size", "8"],
        ["serve", "--batch_size", "8"],
        ["speed", "--tiny"],
        ["speed", "--rounds", "0"],
        ["--mode", "perf"],
        ["notebook"],
        ["profile"],
    ):
        with pytest.raises(SystemExit):
            benchmark.parse_args(argv)
    err = capsys.readouterr().err
    assert "--model" in err and "--rounds: must be at least 1, got 0" in err


def test_untrained_model_takes_its_sizes_from_the_train_flags_and_the_config_defaults(tmp_path, papers_csv):
    from hf_hybrid import HybridCNNLSTMConfig
    from hf_hybrid.data import load_papers
    from hf_hybrid.training_args import DataArguments, ModelArguments

    train = load_papers(DataArguments(train_file=str(papers_csv)))["train"]
    model, tokenizer = untrained_model(ModelArguments(min_frequency=1).for_recipe("default"), train)
    defaults = HybridCNNLSTMConfig()
    for name in (
        "embed_dim",
        "num_filters",
        "kernel_sizes",
        "lstm_hidden",
        "lstm_layers",
        "classifier_hidden_sizes",
        "max_title_length",
        "dropout",
        "wide_branch",
    ):
        assert getattr(model.config, name) == getattr(defaults, name), name
    assert model.config.vocab_size == len(tokenizer) and model.config.num_labels == 3

    small, _ = untrained_model(
        ModelArguments(
            embed_dim=12, lstm_layers=1, kernel_sizes=[2, 3], max_title_length=5, min_frequency=1
        ).for_recipe("notebook"),
        train,
    )
    assert small.config.wide_branch is False
    assert (small.config.embed_dim, small.config.lstm_layers, small.config.kernel_sizes) == (12, 1, [2, 3])
    assert small.config.max_title_length == 5


@pytest.mark.timeout(900)
def test_speed_times_training_and_every_inference_engine_with_parity(tmp_path, papers_csv, capsys):
    output = tmp_path / "speed.json"
    assert (
        benchmark.main(
            [
                "speed",
                "--data",
                str(papers_csv),
                *FAST,
                "--train_steps",
                "2",
                "--warmup_steps",
                "1",
                "--train_flags",
                f"--recipe notebook --lstm_layers 2 {TINY_MODEL}",
                "--workdir",
                str(tmp_path / "work"),
                "--output_json",
                str(output),
            ]
        )
        == 0
    )

    report = json.loads(output.read_text())
    assert report["cpu"]["flags"] == cpu_flags() and report["cpu"]["threads"] == 1
    assert report["test_papers"] == 18  # the stratified 15% of 3 x 40 papers
    # Both sides at the size the flags gave, the hf-hybrid one through hf-hybrid train's own arguments.
    config = json.loads((tmp_path / "work" / "model" / "config.json").read_text())
    assert (config["embed_dim"], config["num_filters"], config["lstm_hidden"]) == (16, 8, 8)
    assert report["sizes"]["notebook_parameters"] == report["sizes"]["hf_hybrid_parameters"]
    for side in ("notebook", "hf_hybrid"):
        entry = report["training"][side]
        assert len(entry["step_seconds"]) == 2 and entry["samples_per_s"] > 0 and entry["peak_rss_mib"] > 0
    engines = report["engines"]
    assert list(engines) == ["notebook", "pytorch", "folded_fp32", "folded_bf16"]
    fp32, bf16 = engines["folded_fp32"], engines["folded_bf16"]
    assert fp32["max_abs_logit_difference"] < 1e-4 and fp32["parity_passed"] is True
    assert bf16["parity_passed"] == (bf16["agreement_with_pytorch"] >= 0.99 and bf16["accuracy_drop"] <= 0.005)
    for entry in engines.values():
        assert entry["batch_papers_per_s"] > 0 and entry["text_batch_papers_per_s"] > 0 and entry["load_s"] > 0
        assert 0 < entry["latency_p50_ms"] <= entry["latency_p95_ms"] and entry["peak_rss_mib"] > 0
    single = report["single_paper"]
    assert single["engine"] == "folded_fp32" and single["p50_ms"] == fp32["latency_p50_ms"]
    assert single["met"] == (single["p50_ms"] <= single["target_p50_ms"] == 3.5)
    out = capsys.readouterr().out
    assert f"CPU flags: {' '.join(cpu_flags())}" in out and "| folded_fp32 |" in out and "| hf_hybrid |" in out
    assert f"One paper through the pipeline (folded_fp32): p50 {single['p50_ms']:.2f} ms, target <= 3.5 ms" in out


@pytest.mark.timeout(600)
def test_onnx_checks_parity_of_both_onnx_engines_on_the_test_split(tmp_path, saved_model_dir, papers_csv, capsys):
    output = tmp_path / "onnx.json"
    assert (
        benchmark.main(
            [
                "onnx",
                "--model",
                str(saved_model_dir),
                "--data",
                str(papers_csv),
                *FAST,
                "--rounds",
                "2",
                "--workdir",
                str(tmp_path / "work"),
                "--output_json",
                str(output),
            ]
        )
        == 0
    )

    report = json.loads(output.read_text())
    assert report["test_papers"] == 18 and report["cpu"]["flags"] == cpu_flags()
    engines = report["engines"]
    assert list(engines) == ["pytorch", "onnx_fp32", "onnx_int8"]
    fp32, int8 = engines["onnx_fp32"], engines["onnx_int8"]
    assert fp32["max_abs_logit_difference"] < 1e-4 and fp32["agreement_with_pytorch"] == 1.0
    assert fp32["accuracy"] == engines["pytorch"]["accuracy"] and fp32["parity_passed"] is True
    assert fp32["onnxruntime_messages"] == int8["onnxruntime_messages"] == 0  # ONNX Runtime warned of nothing
    # int8 is judged by the approximate rule: agreement and accuracy drop decide, whatever they are for this model.
    assert int8["parity_passed"] == (int8["agreement_with_pytorch"] >= 0.99 and int8["accuracy_drop"] <= 0.005)
    for entry in engines.values():
        assert entry["batch_papers_per_s"] > 0 and 0 < entry["latency_p50_ms"] <= entry["latency_p95_ms"]
        # Two rounds, taking turns: each figure is the median of the two.
        assert len(entry["rounds_batch_papers_per_s"]) == 2
        assert entry["batch_papers_per_s"] == pytest.approx(sum(entry["rounds_batch_papers_per_s"]) / 2)
    onnx_dir = tmp_path / "work" / "onnx"
    assert (onnx_dir / "model.onnx").is_file() and (onnx_dir / "model_int8.onnx").is_file()
    out = capsys.readouterr().out
    assert "CPU flags:" in out and "| onnx_int8 |" in out and "PASS" in out
    assert "in each round" in out


@pytest.mark.timeout(600)
def test_accuracy_compares_hf_hybrid_with_tfidf_on_one_split(tmp_path):
    from papers import write_papers_csv

    data = write_papers_csv(tmp_path / "papers.csv", n_per_class=30, labels=("cs.AI", "cs.CL", "cs.CV"))
    output = tmp_path / "accuracy.json"
    flags = f"--recipe notebook --num_train_epochs 2 --per_device_train_batch_size 16 {TINY_MODEL}"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "accuracy",
            "--data",
            str(data),
            "--threads",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--output_json",
            str(output),
            "--train_flags",
            flags,
        ],
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    model_dir = tmp_path / "work" / "hf_hybrid_model"
    training_args = json.loads((model_dir / "training_args.json").read_text())
    assert (training_args["recipe"], training_args["lr_scheduler_type"]) == ("notebook", "reduce_lr_on_plateau")
    assert training_args["num_train_epochs"] == 2 and results["hf_hybrid"]["epochs_trained"] == 2
    assert json.loads((model_dir / "config.json").read_text())["embed_dim"] == 16
    assert results["test_papers"] == 14  # 15% of each class of 30, rounded by the stratified split
    for side in ("hf_hybrid", "tfidf_linear_svm", "tfidf_logistic_regression"):
        scores = results[side]
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["cs_ai_recall"] <= 1 and scores["wall_time_s"] >= 0
        assert sum(map(sum, scores["confusion_matrix"])) == 14 and len(scores["most_confused_pair"]["pair"]) == 2
    # Calibration error is that of probabilities: the model's and logistic regression's, not LinearSVC's margins.
    assert results["tfidf_linear_svm"]["ece"] is None
    assert 0 <= results["hf_hybrid"]["ece"] <= 1 and 0 <= results["tfidf_logistic_regression"]["ece"] <= 1
    assert results["tfidf_linear_svm"]["accuracy"] > 0.8  # the made-up topics are easy for TF-IDF
    assert f"| hf-hybrid ({flags}) |" in result.stdout and "| TF-IDF 1-2 grams + LinearSVC |" in result.stdout
    assert "| TF-IDF 1-2 grams + logistic regression |" in result.stdout and "| no probabilities |" in result.stdout
    assert f"CPU flags: {' '.join(cpu_flags())}" in result.stdout and results["cpu"]["flags"] == cpu_flags()


def test_tfidf_scores_come_from_the_library_report():
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from benchmarks.accuracy import tfidf_linear_svm

    features = Features(
        {"title": Value("string"), "abstract": Value("string"), "labels": ClassLabel(names=["cs.AI", "cs.CL"])}
    )
    rows = {
        "title": ["planning agents", "language text"] * 6,
        "abstract": ["logic search", "parsing tokens"] * 6,
        "labels": [0, 1] * 6,
    }
    splits = DatasetDict(
        train=Dataset.from_dict(rows, features=features),
        test=Dataset.from_dict({k: v[:4] for k, v in rows.items()}, features=features),
    )
    scores = tfidf_linear_svm(splits)  # two classes: LinearSVC's one signed distance per paper
    assert scores["accuracy"] == 1.0 and scores["cs_ai_recall"] == 1.0
    assert scores["confusion_matrix"] == [[2, 0], [0, 2]]

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from benchmarks.accuracy import tfidf_logistic_regression

    scores = tfidf_logistic_regression(splits)
    assert scores["accuracy"] == 1.0 and scores["confusion_matrix"] == [[2, 0], [0, 2]]
    # Every answer right: the calibration error is how far the mean confidence falls short of 1.
    texts = [f"{title} . {abstract}" for title, abstract in zip(rows["title"], rows["abstract"])]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    confidence = (
        LogisticRegression(C=10.0, max_iter=1000)
        .fit(vectorizer.fit_transform(texts), rows["labels"])
        .predict_proba(vectorizer.transform(texts[:4]))
        .max(axis=1)
    )
    assert 0.5 < confidence.mean() < 1.0
    assert scores["ece"] == pytest.approx(1.0 - confidence.mean(), abs=1e-6)


def test_most_confused_pair_counts_both_directions():
    matrix = [[50, 9, 1], [2, 40, 0], [3, 0, 45]]  # errors: a<->b 11, a<->c 4, b<->c 0
    pair = most_confused_pair(matrix, ["a", "b", "c"])
    assert pair == {"pair": ["a", "b"], "errors": 11, "share_of_errors": 11 / 15}


def test_small_data_draws_the_curve_against_tfidf_on_papers_kept_out_of_every_fit(tmp_path, saved_model_dir):
    import pandas as pd
    from papers import write_multi_label_csv

    data = write_multi_label_csv(tmp_path / "papers.csv", n=120, labels=("cs.AI", "cs.CL", "cs.CV", "cs.LG"))
    table = pd.read_csv(data)
    base_data = tmp_path / "base.csv"
    table.head(30).to_csv(base_data, index=False)  # what the base model "trained on": kept out of the test set
    output = tmp_path / "small.json"
    argv = [sys.executable, str(BENCHMARK), "small-data", "--data", str(data), "--base_data", str(base_data)]
    argv += ["--categories", "cs.AI", "cs.CL", "cs.CV", "--per_category", "5", "--seeds", "42", "--threads", "1"]
    argv += ["--base_model", str(saved_model_dir), "--workdir", str(tmp_path / "work"), "--output_json", str(output)]
    argv += ["--train_flags", f"--per_device_train_batch_size 4 {TINY_MODEL}"]
    argv += ["--finetune_flags", "--per_device_train_batch_size 4"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=590)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    (point,) = report["points"]
    assert (point["per_category"], point["seed"], point["papers"]) == ("5", 42, 15)
    for method in ("tfidf_logistic_regression", "train", "finetune"):
        assert 0 <= point[method]["accuracy"] <= 1 and 0 <= point[method]["f1_macro"] <= 1
    assert point["tfidf_logistic_regression"]["C"] in (1.0, 10.0, 100.0)
    # The test papers: a fixed share of each category, none of them in the base data or any training draw.
    test = pd.read_csv(tmp_path / "work" / "test.csv")
    assert len(test) == report["test_papers"] and not set(test["title"]) & set(table.head(30)["title"])
    assert not set(test["title"]) & set(pd.read_csv(tmp_path / "work" / "train-5-42.csv")["title"])
    assert set(test["category"]) == {"cs.AI", "cs.CL", "cs.CV"}
    assert "| 5 (15) |" in result.stdout and f"CPU flags: {' '.join(cpu_flags())}" in result.stdout


@pytest.mark.timeout(600)
def test_serve_loads_the_server_with_clients_beside_the_bulk_path(tmp_path, papers_csv, capsys):
    output = tmp_path / "serve.json"
    argv = ["serve", "--data", str(papers_csv), "--train_flags", TINY_MODEL, "--threads", "1", "--clients", "1,4"]
    argv += ["--seconds", "1", "--memory_requests", "1200", "--server_flags", "--max_wait_ms 1"]
    assert benchmark.main([*argv, "--workdir", str(tmp_path / "work"), "--output_json", str(output)]) == 0

    report = json.loads(output.read_text())
    assert report["cpu"]["flags"] == cpu_flags() and report["papers"] == 18
    assert report["server_flags"] == "--max_wait_ms 1" and report["server_exit_status"] == 0
    assert report["label_agreement_with_bulk"] == 1.0  # the server's labels are the bulk path's
    bulk = report["bulk"]
    assert len(bulk["papers_per_s_before_and_after"]) == 2 and bulk["papers_per_s"] > 0 and bulk["peak_rss_mib"] > 0
    assert list(report["clients"]) == ["1", "4"]
    for count, level in report["clients"].items():
        assert level["clients"] == int(count) and level["papers_per_s"] > 0 and level["connection_errors"] == 0
        assert set(level["status"]) == {"200"} and 0 < level["latency_p50_ms"] <= level["latency_p99_ms"]
        assert level["server_peak_rss_mib"] > 0
    memory = report["memory"]
    assert (memory["requests"], memory["first_requests"], memory["non_2xx"], memory["errors"]) == (1200, 1000, 0, 0)
    assert memory["rss_after_first_mib"] > 0 and memory["rss_at_end_mib"] > 0
    out = capsys.readouterr().out
    assert f"CPU flags: {' '.join(cpu_flags())}" in out and "| server, 4 client(s) |" in out
    assert "Server RSS after 1,000 requests" in out


def test_stock_tools_reads_a_text_alone_every_way_and_runs_a_stock_trainer_at_learning_rate_0(
    tmp_path, saved_model_dir, papers_csv, capsys
):
    output = tmp_path / "stock_tools.json"
    argv = ["stock-tools", "--model", str(saved_model_dir), "--train_file", str(papers_csv)]
    argv += ["--validation_file", str(papers_csv), "--threads", "1", "--workdir", str(tmp_path), "--output_json"]
    assert benchmark.main([*argv, str(output)]) == 0
    report = json.loads(output.read_text())
    readings = {(row["given_as"], row["read_as"]) for row in report["text_alone"]}
    assert ("title and abstract", "the pair") in readings and len(readings) == 11
    assert all(0 <= row["accuracy"] <= 1 for row in report["text_alone"])
    kept = [row for row in report["trainer"] if row["batch_norm"] == "kept"]
    assert [row["padding"] for row in kept] == ["max_length", "longest"]
    assert all(row["after"] == row["before"] for row in kept)  # learning rate 0 changes nothing
    assert "| the title alone | read whole |" in capsys.readouterr().out
