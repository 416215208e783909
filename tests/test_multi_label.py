"""Multi-label classification: every label a paper is listed in, from the config's `problem_type` to the loss, the
data, the tuned thresholds, the metrics, the card, the pipelines, the CLI, remote code, ONNX, the Hub and
fine-tuning."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from papers import make_multi_label_papers, write_multi_label_csv
from transformers import AutoModelForSequenceClassification, pipeline

from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification
from hf_hybrid.calibration import fit_temperature, tune_thresholds
from hf_hybrid.class_weights import parse_class_weights, resolve_class_weights
from hf_hybrid.cli import main
from hf_hybrid.data import DataError, load_papers, tokenize_papers
from hf_hybrid.evaluation import classification_metric, evaluation_report
from hf_hybrid.loading import load_trained
from hf_hybrid.model.pipeline_arxiv_classification import decide_labels
from hf_hybrid.tables import label_names_of
from hf_hybrid.training_args import DataArguments

MULTI_LABEL = "multi_label_classification"
LABELS = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]
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
    "--disable_tqdm",
    "true",
    "--dataloader_pin_memory",
    "false",
    "--seed",
    "0",
]
PAPER = {"title": "Image segmentation of text", "abstract": "pixels image camera corpus text translation tokens"}


def train_flags(papers_csv, output_dir, *more):
    return [
        "train",
        "--train_file",
        str(papers_csv),
        "--label_column",
        "categories",
        "--problem_type",
        MULTI_LABEL,
        "--output_dir",
        str(output_dir),
        *TINY_FLAGS,
        *more,
    ]


@pytest.fixture(scope="module")
def papers_csv(tmp_path_factory):
    return write_multi_label_csv(tmp_path_factory.mktemp("multi_label") / "papers.csv", n=200)


@pytest.fixture(scope="module")
def trained(papers_csv, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("multi_label_model") / "model"
    assert main(train_flags(papers_csv, output_dir, "--num_train_epochs", "6")) == 0
    return output_dir


# --- the model ------------------------------------------------------------------------------------------------


def test_problem_type_is_single_label_unless_asked_and_checked(make_tiny_config):
    assert make_tiny_config().problem_type == "single_label_classification"
    assert not make_tiny_config().is_multi_label
    with pytest.raises(ValueError, match="`problem_type` must be"):
        make_tiny_config(problem_type="regression")
    with pytest.raises(ValueError, match="`label_thresholds` are for multi-label"):
        make_tiny_config(label_thresholds=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="one probability from 0 to 1 per label"):
        make_tiny_config(problem_type=MULTI_LABEL, label_thresholds=[0.5, 1.5, 0.5])
    with pytest.raises(ValueError, match="one probability from 0 to 1 per label"):
        make_tiny_config(problem_type=MULTI_LABEL, label_thresholds=[0.5])


@pytest.mark.parametrize("wide_branch", [False, True])
def test_the_loss_is_each_labels_binary_cross_entropy_with_positive_weights(make_tiny_config, wide_branch):
    config = make_tiny_config(
        problem_type=MULTI_LABEL, class_weights=[1.0, 3.0, 0.5], wide_branch=wide_branch, wide_bigram_buckets=64
    )
    model = HybridCNNLSTMForSequenceClassification(config).eval()
    if wide_branch:
        torch.nn.init.normal_(model.wide.weight)  # it starts at zero
    inputs = {
        "title_input_ids": torch.tensor([[5, 6, 7], [8, 9, 0]]),
        "abstract_input_ids": torch.tensor([[7, 8, 9, 10], [11, 12, 13, 0]]),
    }
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(**inputs, labels=labels)
    deep = model.classifier(model.hybrid(**inputs).fused_representation)
    weight = torch.tensor([1.0, 3.0, 0.5])

    def binary_cross_entropy(logits):
        return -(
            weight * labels * torch.nn.functional.logsigmoid(logits)
            + (1 - labels) * torch.nn.functional.logsigmoid(-logits)
        ).mean()

    expected = binary_cross_entropy(deep)
    if wide_branch:
        # Each branch learns on its own loss; together they predict with the sum of their log-odds.
        expected = expected + binary_cross_entropy(out.wide_logits)
        torch.testing.assert_close(out.logits, deep + out.wide_logits)
    else:
        torch.testing.assert_close(out.logits, deep)
    torch.testing.assert_close(out.loss, expected)


def test_the_temperature_divides_the_multi_label_scores(make_tiny_config):
    model = HybridCNNLSTMForSequenceClassification(make_tiny_config(problem_type=MULTI_LABEL)).eval()
    inputs = {"title_input_ids": torch.tensor([[5, 6]]), "abstract_input_ids": torch.tensor([[7, 8, 9]])}
    raw = model(**inputs).logits
    model.config.calibration_temperature = 2.5
    torch.testing.assert_close(model(**inputs).logits, raw / 2.5)


# --- data -----------------------------------------------------------------------------------------------------


def test_labels_are_read_from_space_separated_names_and_from_lists(tmp_path):
    papers = make_multi_label_papers(120)
    csv_file = write_multi_label_csv(tmp_path / "papers.csv", papers)
    jsonl_file = tmp_path / "papers.jsonl"
    jsonl_file.write_text("".join(json.dumps({**p, "categories": p["categories"].split()}) + "\n" for p in papers))
    splits = {}
    for path in (csv_file, jsonl_file):
        splits[path.suffix] = load_papers(
            DataArguments(train_file=str(path), label_column="categories"), seed=0, multi_label=True
        )
    for split in ("train", "validation", "test"):
        assert splits[".csv"][split]["labels"] == splits[".jsonl"][split]["labels"]
    train = splits[".csv"]["train"]
    assert label_names_of(train) == LABELS
    by_title = {p["title"]: sorted(p["categories"].split()) for p in papers}
    for row in train.select(range(20)):
        assert [LABELS[i] for i in sorted(row["labels"])] == by_title[row["title"]]


# How users write a paper's labels in a cell: the ones of make_multi_label_papers, spelled four other ways.
LABEL_SPELLINGS = {
    "commas": ",".join,
    "commas and spaces": ", ".join,
    "a list as pandas writes one": lambda names: str(list(names)),
    "a list as JSON": json.dumps,
}


@pytest.mark.parametrize("spelling", list(LABEL_SPELLINGS))
def test_labels_separated_by_commas_or_written_as_a_list_are_read_as_names(spelling, tmp_path):
    papers = make_multi_label_papers(120)
    # Every other paper keeps its space-separated labels: one file holds both spellings.
    respelled = [
        {**p, "categories": LABEL_SPELLINGS[spelling](p["categories"].split()) if i % 2 else p["categories"]}
        for i, p in enumerate(papers)
    ]
    assert any("," in p["categories"] for p in respelled)
    splits = {
        name: load_papers(
            DataArguments(
                train_file=str(write_multi_label_csv(tmp_path / f"{name}.csv", table)), label_column="categories"
            ),
            seed=0,
            multi_label=True,
        )
        for name, table in (("plain", papers), ("respelled", respelled))
    }
    assert label_names_of(splits["respelled"]["train"]) == LABELS  # before: 'cs.AI,' 'cs.AI,cs.LG' "['cs.AI'," ...
    for split in ("train", "validation", "test"):
        assert splits["respelled"][split]["labels"] == splits["plain"][split]["labels"]


@pytest.mark.parametrize("cell", ["['cs.AI', 'cs.CV'", "cs.AI 'cs.CV'", "[cs.AI], [cs.CV]"])
def test_a_label_cell_that_is_neither_names_nor_a_list_is_named(cell, tmp_path):
    papers = make_multi_label_papers(40)
    papers[7]["categories"] = cell
    path = write_multi_label_csv(tmp_path / "papers.csv", papers)
    with pytest.raises(DataError) as refused:
        load_papers(DataArguments(train_file=str(path), label_column="categories"), multi_label=True)
    assert str(refused.value) == (
        f"{path}: the label cell {cell!r} is neither names separated by spaces or commas nor a list of names: "
        "write it as cs.CV cs.LG or ['cs.CV', 'cs.LG']"
    )


def test_the_split_gives_every_label_its_share_and_multi_hot_rows(tmp_path):
    papers = make_multi_label_papers(300, seed=1)
    # A rare label, on 12 papers: stratified by their rarest label, each split gets some of them.
    for paper in papers[:12]:
        paper["categories"] += " cs.DB"
    splits = load_papers(
        DataArguments(train_file=str(write_multi_label_csv(tmp_path / "p.csv", papers)), label_column="categories"),
        seed=0,
        multi_label=True,
    )
    database = label_names_of(splits["train"]).index("cs.DB")
    counts = {name: sum(database in ids for ids in split["labels"]) for name, split in splits.items()}
    assert counts["train"] + counts["validation"] + counts["test"] == 12
    assert min(counts.values()) >= 1
    tokenizer_corpus = [t for t in splits["train"]["title"]]
    from hf_hybrid import HybridCNNLSTMTokenizer

    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(tokenizer_corpus, min_frequency=1)
    tokenized = tokenize_papers(splits["test"], tokenizer)
    rows = np.array(tokenized["labels"])
    assert rows.shape == (len(splits["test"]), 5) and set(np.unique(rows)) <= {0.0, 1.0}
    assert [sorted(np.flatnonzero(row)) for row in rows] == [sorted(ids) for ids in splits["test"]["labels"]]


def test_unknown_labels_of_a_test_file_are_refused(tmp_path, papers_csv):
    other = write_multi_label_csv(
        tmp_path / "test.csv", [{"title": "t", "abstract": "a b c d e f", "categories": "cs.AI math.OC"}]
    )
    with pytest.raises(DataError, match=r"labels \['math.OC'\] are not among"):
        load_papers(
            DataArguments(train_file=str(papers_csv), test_file=str(other), label_column="categories"), multi_label=True
        )


def test_balanced_positive_weights_are_negatives_over_positives():
    weights = resolve_class_weights("balanced", ["a", "b", "c"], [[0], [0, 1], [0], [2]])
    assert weights == pytest.approx([1 / 3, 3.0, 3.0], abs=1e-6)
    assert resolve_class_weights(parse_class_weights(["b=2"]), ["a", "b", "c"], [[0], [1]]) == [1.0, 2.0, 1.0]


# --- decisions and metrics -------------------------------------------------------------------------------------


def test_decisions_take_every_label_above_its_threshold_and_at_least_the_best():
    probabilities = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.3, 0.4], [0.1, 0.8, 0.75]])
    thresholds = [0.5, 0.5, 0.8]
    assert decide_labels(probabilities, thresholds).int().tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]
    assert decide_labels(probabilities, thresholds, allow_empty=True).int().tolist() == [
        [1, 1, 0],
        [0, 0, 0],
        [0, 1, 0],
    ]


def test_multi_label_scores_equal_a_hand_computation():
    references = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    predictions = [[1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 0, 1]]
    probabilities = [[0.9, 0.2, 0.4], [0.1, 0.7, 0.6], [0.8, 0.9, 0.3], [0.55, 0.1, 0.95]]
    scores = classification_metric("multilabel").compute(
        predictions=predictions, references=references, label_names=["a", "b", "c"], probabilities=probabilities
    )
    # true positives 5, false positives 2, false negatives 1
    assert scores["f1_micro"] == pytest.approx(2 * 5 / (2 * 5 + 2 + 1))
    per_label = [2 * 2 / (2 * 2 + 1), 1.0, 2 * 1 / (2 * 1 + 1 + 1)]  # a: tp 2 fp 1; b: tp 2; c: tp 1 fp 1 fn 1
    assert scores["f1_macro"] == pytest.approx(np.mean(per_label))
    assert scores["f1_samples"] == pytest.approx(np.mean([2 / 3, 2 / 3, 1.0, 2 / 3]))
    assert scores["subset_accuracy"] == 0.25
    assert scores["per_class"]["c"] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2.0}
    p, y = np.array(probabilities), np.array(references)
    assert scores["log_loss"] == pytest.approx(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    assert scores["brier_score"] == pytest.approx(((p - y) ** 2).sum(axis=1).mean())
    # ECE over the 12 (paper, label) probabilities in 15 bins of width 1/15
    bins = np.clip(np.ceil(p.ravel() * 15).astype(int) - 1, 0, 14)
    gap = sum(
        abs(p.ravel()[bins == b].mean() - y.ravel()[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins)
    )
    assert scores["expected_calibration_error"] == pytest.approx(gap / 12)


def test_evaluation_report_decides_with_the_thresholds():
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    probabilities = np.array([[0.7, 0.2], [0.3, 0.35], [0.6, 0.45]])
    logits = np.log(probabilities / (1 - probabilities))
    untuned = evaluation_report(labels, logits, ["a", "b"])
    tuned = evaluation_report(labels, logits, ["a", "b"], thresholds=[0.5, 0.35])
    # At 0.5, paper 2 reaches no threshold and gets its best label (right), paper 3 misses b.
    assert untuned["subset_accuracy"] == pytest.approx(2 / 3) and untuned["thresholds"] == [0.5, 0.5]
    assert tuned["subset_accuracy"] == 1.0 and tuned["thresholds"] == [0.5, 0.35]


def test_thresholds_are_tuned_for_f1_per_label_or_globally():
    probabilities = np.array([[0.3, 0.9], [0.2, 0.8], [0.1, 0.6], [0.05, 0.2]])
    labels = np.array([[1, 1], [1, 1], [0, 1], [0, 0]])
    per_label = tune_thresholds(probabilities, labels, per_label=True)
    assert 0.1 < per_label[0] <= 0.2 and 0.2 < per_label[1] <= 0.6
    single = tune_thresholds(probabilities, labels, per_label=False)
    assert len(set(single)) == 1 and 0.1 < single[0] <= 0.2


def test_a_multi_label_temperature_minimises_the_binary_log_likelihood():
    logits = np.array([[4.0, -4.0], [4.0, 4.0], [-4.0, 4.0], [4.0, -4.0]])
    labels = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    temperature = fit_temperature(logits, labels)

    def loss(t):  # the binary log-likelihood with the fit's weak prior on log T (one paper's weight)
        likelihood = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor(logits / t), torch.tensor(labels, dtype=torch.float64)
        )
        return likelihood + np.log(t) ** 2 / (2 * len(labels))

    assert temperature > 1 and loss(temperature) < min(loss(temperature * 0.9), loss(temperature * 1.1))
    with pytest.raises(ValueError, match="finite scores"):
        fit_temperature(np.array([[np.nan, 0.0]]), labels[:1])


# --- a trained model ---------------------------------------------------------------------------------------------


def test_training_tunes_stores_and_reports_thresholds(trained):
    config = HybridCNNLSTMConfig.from_pretrained(trained)
    assert config.problem_type == MULTI_LABEL and config.is_multi_label
    assert len(config.label_thresholds) == 4 and config.calibration_temperature != 1.0
    results = json.loads((trained / "eval_results.json").read_text())
    test = results["test"]
    assert test["thresholds"] == config.label_thresholds
    assert set(test["threshold_tuning"]) == {"none", "global", "per_label"}
    # The default is one threshold for every label, the one of best validation micro-F1.
    assert results["calibration"]["threshold_tuning"] == "global" and len(set(config.label_thresholds)) == 1
    assert results["calibration"]["thresholds"]["global"]["thresholds"] == config.label_thresholds
    assert test["f1_micro"] == test["threshold_tuning"]["global"]["f1_micro"]
    assert test["f1_micro"] > 0.8  # the made-up topics are easy
    assert "best_validation_f1_micro" in results
    assert (trained / "label_f1.png").is_file() and not (trained / "confusion_matrix.png").exists()
    report = (trained / "classification_report.txt").read_text()
    assert "samples avg" in report and all(label in report for label in LABELS)


def test_the_card_shows_multi_label_scores_and_thresholds(trained):
    card = (trained / "README.md").read_text()
    from huggingface_hub import ModelCard

    metrics = {
        (r.metric_type, r.metric_config): r.metric_value
        for r in ModelCard.load(trained / "README.md").data.eval_results
    }
    test = json.loads((trained / "eval_results.json").read_text())["test"]
    assert metrics[("f1", "micro")] == round(test["f1_micro"], 4)
    assert metrics[("f1", "macro")] == round(test["f1_macro"], 4)
    assert metrics[("accuracy", "subset")] == round(test["subset_accuracy"], 4)
    assert "| **global** (this model's) |" in card and "label_thresholds" in card and "![label_f1.png]" in card
    assert "coverage" not in card.lower()


def test_the_pipeline_returns_every_label_above_its_threshold(trained):
    classify = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)
    result = classify(PAPER, top_k=2)
    thresholds = dict(zip(LABELS, HybridCNNLSTMConfig.from_pretrained(trained).label_thresholds))
    above = [name for name, p in sorted(result["scores"].items(), key=lambda item: -item[1]) if p >= thresholds[name]]
    assert result["labels"] == (above or [max(result["scores"], key=result["scores"].get)])
    assert result["needs_review"] is (not above) and "label" not in result
    assert [entry["label"] for entry in result["top_labels"]] == sorted(
        result["scores"], key=result["scores"].get, reverse=True
    )[:2]
    everything = classify(PAPER, threshold=0.0)
    assert sorted(everything["labels"]) == LABELS
    classify.model.config.label_thresholds = [2.0] * 4  # out of reach: no label is decided
    nothing = classify(PAPER, allow_empty=True)
    assert nothing["labels"] == [] and nothing["needs_review"] is True
    best = classify(PAPER)
    assert best["labels"] == [max(best["scores"], key=best["scores"].get)] and best["needs_review"] is True
    # The probabilities are each label's own calibrated sigmoid, the same in the text-classification pipeline.
    tokenizer, model = load_trained(str(trained))
    logits = model(**tokenizer(PAPER["title"], PAPER["abstract"], return_tensors="pt")).logits[0]
    assert list(result["scores"].values()) == pytest.approx(logits.sigmoid().tolist())
    text = pipeline("text-classification", model=str(trained), trust_remote_code=True)
    scores = {
        entry["label"]: entry["score"]
        for entry in text({"text": PAPER["title"], "text_pair": PAPER["abstract"]}, top_k=None)
    }
    assert scores == pytest.approx(result["scores"])


def test_allow_empty_is_refused_for_a_single_label_model(saved_model_dir, capsys):
    classify = pipeline("arxiv-classification", model=str(saved_model_dir), trust_remote_code=True)
    with pytest.raises(ValueError, match="`allow_empty` is for multi-label models"):
        classify(PAPER, allow_empty=True)
    assert main(["predict", "--model", str(saved_model_dir), "--title", "t", "--allow_empty"]) == 1
    assert "--allow_empty is for multi-label models" in capsys.readouterr().err


def test_predict_and_evaluate_commands(trained, papers_csv, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained),
                "--title",
                PAPER["title"],
                "--abstract",
                PAPER["abstract"],
                "--threshold",
                "1.0",
                "--allow_empty",
                "--top_k",
                "3",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    certain = [name for name, p in sorted(result["scores"].items(), key=lambda item: -item[1]) if p >= 1.0]
    assert result["labels"] == certain and result["needs_review"] is (not certain)
    assert len(result["top_labels"]) == 3
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained),
                "--test_file",
                str(papers_csv),
                "--label_column",
                "categories",
                "--output_file",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    report = json.loads((tmp_path / "report.json").read_text())
    assert (
        report["num_samples"] == 200
        and report["thresholds"] == HybridCNNLSTMConfig.from_pretrained(trained).label_thresholds
    )
    assert set(report["per_class"]) == set(LABELS) and 0 < report["f1_macro"] <= 1
    assert summary["f1_micro"] == report["f1_micro"] and "coverage" not in summary
    assert summary["per_class_f1"] == {name: scores["f1-score"] for name, scores in report["per_class"].items()}


def test_a_fresh_process_loads_it_with_remote_code_alone(trained, tmp_path):
    script = f"""
import json, sys
sys.meta_path.insert(0, type("Refuse", (), {{"find_spec": staticmethod(
    lambda name, *a: (_ for _ in ()).throw(ImportError(name)) if name.split(".")[0] == "hf_hybrid" else None)}})())
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
tokenizer = AutoTokenizer.from_pretrained({str(trained)!r}, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained({str(trained)!r}, trust_remote_code=True).eval()
inputs = tokenizer([{PAPER["title"]!r}], [{PAPER["abstract"]!r}], return_tensors="pt")
result = pipeline("arxiv-classification", model={str(trained)!r}, trust_remote_code=True)({PAPER!r})
print(json.dumps({{"logits": model(**inputs).logits[0].tolist(), "labels": result["labels"],
                  "problem_type": model.config.problem_type, "thresholds": model.config.label_thresholds}}))
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "PYTHONPATH": "",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(proc.stdout.strip().splitlines()[-1])
    tokenizer, model = load_trained(str(trained))
    logits = model(**tokenizer([PAPER["title"]], [PAPER["abstract"]], return_tensors="pt")).logits[0]
    assert remote["logits"] == logits.tolist()
    assert remote["problem_type"] == MULTI_LABEL and remote["thresholds"] == model.config.label_thresholds
    local = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)(PAPER)
    assert remote["labels"] == local["labels"]


def test_the_folded_fast_path_gives_the_same_labels(trained):
    classify = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)
    plain = classify([PAPER, {"title": "Planning agents", "abstract": "logic search heuristic solver"}])
    folded = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True, fold_for_inference=True)
    fast = folded([PAPER, {"title": "Planning agents", "abstract": "logic search heuristic solver"}])
    for a, b in zip(plain, fast):
        assert a["labels"] == b["labels"] and list(a["scores"].values()) == pytest.approx(
            list(b["scores"].values()), abs=1e-5
        )


def test_onnx_gives_the_same_multi_label_logits(trained, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from hf_hybrid.export import export_onnx

    tokenizer, model = load_trained(str(trained))
    export_onnx(model, tokenizer, tmp_path)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    papers = [PAPER, {"title": "", "abstract": "gradient"}, {"title": "One", "abstract": ""}]
    inputs = tokenizer([p["title"] for p in papers], [p["abstract"] for p in papers], padding=True, return_tensors="np")
    onnx_logits = session.run(["logits"], dict(inputs))[0]
    expected = (
        model(
            **tokenizer(
                [p["title"] for p in papers], [p["abstract"] for p in papers], padding=True, return_tensors="pt"
            )
        )
        .logits.detach()
        .numpy()
    )
    # The tiny model's temperature is below 1, which scales float32 rounding up: compare what users read.
    np.testing.assert_allclose(onnx_logits, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(torch.tensor(onnx_logits).sigmoid(), torch.tensor(expected).sigmoid(), atol=1e-5)


def test_finetuning_keeps_the_problem_type_and_retunes_the_thresholds(trained, tmp_path):
    papers = write_multi_label_csv(tmp_path / "new.csv", n=120, seed=3)
    output_dir = tmp_path / "finetuned"
    assert (
        main(
            [
                "finetune",
                "--model",
                str(trained),
                "--train_file",
                str(papers),
                "--label_column",
                "categories",
                "--output_dir",
                str(output_dir),
                "--per_device_train_batch_size",
                "8",
                "--disable_tqdm",
                "true",
                "--dataloader_pin_memory",
                "false",
            ]
        )
        == 0
    )
    config = HybridCNNLSTMConfig.from_pretrained(output_dir)
    assert config.problem_type == MULTI_LABEL and len(config.label_thresholds) == 4
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["base_model"] == str(trained) and results["test"]["thresholds"] == config.label_thresholds
    model = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True)
    assert model.config.is_multi_label
    # the training length rule, as for training: on a tiny table, its most epochs
    assert json.loads((output_dir / "training_args.json").read_text())["num_train_epochs"] == 20.0


def test_a_new_multi_label_model_trains_the_recipes_multi_label_epochs_unless_given(trained, papers_csv, tmp_path):
    assert json.loads((trained / "training_args.json").read_text())["num_train_epochs"] == 6.0
    output_dir = tmp_path / "out"
    assert main(train_flags(papers_csv, output_dir, "--wide_branch", "false")) == 0
    # the recipe's 3 multi-label epochs are the rule's fewest; on a tiny table it trains its most, 20
    assert json.loads((output_dir / "training_args.json").read_text())["num_train_epochs"] == 20.0


def test_a_single_label_checkpoint_is_refused_for_a_multi_label_resume(tmp_path, papers_csv, capsys):
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "hybrid_cnn_lstm", "problem_type": None}))
    assert main(train_flags(papers_csv, tmp_path / "out", "--resume_from_checkpoint", str(checkpoint))) == 1
    assert "--problem_type multi_label_classification (the checkpoint's: single_label_classification)" in (
        capsys.readouterr().err
    )


def test_the_demo_shows_every_label_of_a_paper(trained):
    from hf_hybrid.demo import explain_paper

    tokenizer, model = load_trained(str(trained))
    from hf_hybrid import ArxivClassificationPipeline

    classify = ArxivClassificationPipeline(model=model, tokenizer=tokenizer)
    result = classify(PAPER)
    shown = explain_paper(classify, PAPER["title"], PAPER["abstract"])
    assert shown["labels"] == result["labels"] and "label" not in shown and shown["scores"] == result["scores"]
    rule = "each with a probability at its threshold or above"
    assert shown["notes"][0] == f"Labels: {', '.join(result['labels'])} ({rule})."
    halves = explain_paper(classify, PAPER["title"], PAPER["abstract"], threshold=0.5)
    assert halves["labels"] == classify(PAPER, threshold=0.5)["labels"]
    assert halves["notes"][0].endswith("(each with a probability of 0.50 or more).")
    classify.model.config.label_thresholds = [2.0] * 4  # out of reach
    unsure = explain_paper(classify, PAPER["title"], PAPER["abstract"])
    assert len(unsure["labels"]) == 1 and "it needs a person's review" in unsure["notes"][1]


@pytest.mark.timeout(600)
def test_the_accuracy_benchmark_compares_with_tfidf_one_vs_rest(papers_csv, tmp_path):
    benchmark = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "benchmark.py")
    output = tmp_path / "accuracy.json"
    flags = f"--problem_type {MULTI_LABEL} --label_column categories --num_train_epochs 2 " + " ".join(TINY_FLAGS[:-2])
    result = subprocess.run(
        [
            sys.executable,
            benchmark,
            "accuracy",
            "--data",
            str(papers_csv),
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
    assert results["multi_label"] is True and results["test_papers"] == 30
    trained_report = json.loads((tmp_path / "work" / "hf_hybrid_model" / "eval_results.json").read_text())["test"]
    assert results["hf_hybrid"]["f1_micro"] == trained_report["f1_micro"]
    baseline = results["tfidf_one_vs_rest"]
    assert baseline["f1_micro"] > 0.7 and set(baseline["per_label_f1"]) == set(LABELS)
    assert "| TF-IDF 1-2 grams + one-vs-rest logistic regression (labels >= 0.3) |" in result.stdout
    # Scoring the finished run again gives its numbers without training.
    again = subprocess.run(
        [
            sys.executable,
            benchmark,
            "accuracy",
            "--data",
            str(papers_csv),
            "--threads",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--train_flags",
            flags,
            "--reuse_trained",
        ],
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "n/a (trained earlier)" in again.stdout and f"{results['hf_hybrid']['f1_micro']:.4f}" in again.stdout


def test_bulk_prediction_gives_the_pipelines_labels(trained, papers_csv, tmp_path):
    output = tmp_path / "predictions.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained),
                "--input_file",
                str(papers_csv),
                "--output_file",
                str(output),
                "--top_k",
                "2",
            ]
        )
        == 0
    )
    bulk = [json.loads(line) for line in output.read_text().splitlines()]
    papers = [{"title": p["title"], "abstract": p["abstract"]} for p in make_multi_label_papers(200)]
    expected = pipeline("arxiv-classification", model=str(trained), trust_remote_code=True)(papers, top_k=2)
    assert len(bulk) == 200
    for got, want in zip(bulk, expected):
        assert got["labels"] == want["labels"] and got["needs_review"] == want["needs_review"]
        assert list(got["scores"].values()) == pytest.approx(list(want["scores"].values()), abs=1e-5)
        assert [entry["label"] for entry in got["top_labels"]] == [entry["label"] for entry in want["top_labels"]]
    parquet = tmp_path / "parquet"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained),
                "--input_file",
                str(papers_csv),
                "--output_file",
                str(parquet),
                "--output_format",
                "parquet",
                "--threshold",
                "1.0",
                "--allow_empty",
            ]
        )
        == 0
    )
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.num_rows == 200 and str(table.schema.field("labels").type) == "list<element: string>"
    for labels, review, scores in zip(
        table["labels"].to_pylist(), table["needs_review"].to_pylist(), table["scores"].to_pylist()
    ):
        certain = [name for name, p in sorted(scores.items(), key=lambda item: -item[1]) if p >= 1.0]
        assert labels == certain and review is (not certain)
