"""Accuracy and calibration against TF-IDF + LinearSVC and TF-IDF + logistic regression (one-vs-rest logistic
regression, multi-label): hf-hybrid trained as `hf-hybrid train` trains, on the same split.

hf-hybrid's run is `hf-hybrid train` with `--train_flags` added (any of its flags: `"--recipe notebook"`,
`"--num_train_epochs 2"`, `"--seed 43"`, `"--max_train_samples 1000"`, `"--resume_from_checkpoint DIR"`); its
split is seed 42's unless the flags set `--split_seed`. Word 1-2 gram TF-IDF + LinearSVC and + logistic regression
(C = 10) are fitted on the same training papers in the same run. All are scored on the test split by
`hf_hybrid.evaluation`: accuracy, macro-F1, expected calibration error (of probabilities: not LinearSVC's), cs.AI
recall (the class the notebook struggled with), the most confused pair of classes, wall time.

With `--problem_type multi_label_classification` among the flags (and the label column, e.g. `--label_column
categories` for `arxiv_multilabel.csv`), the question is multi-label: the baseline is word 1-2 gram TF-IDF +
one-vs-rest logistic regression, each paper given every label of probability 0.3 or more and at least its best one,
and both are scored by micro, macro and samples F1 and subset accuracy. `--reuse_trained` scores the model already
in `--model_output_dir` (a finished run of the same flags) instead of training it again.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--train_flags", default="", help="more `hf-hybrid train` flags for hf-hybrid's run")
    parser.add_argument(
        "--model_output_dir",
        type=Path,
        default=None,
        help="where the trained hf-hybrid model goes (default: inside --workdir)",
    )
    parser.add_argument(
        "--reuse_trained",
        action="store_true",
        help="score the finished run in --model_output_dir (trained with the same flags) instead of training again",
    )


def run(args) -> dict:
    from hf_hybrid.data import load_papers
    from hf_hybrid.model.configuration_hybrid_cnn_lstm import MULTI_LABEL
    from hf_hybrid.training import train_model
    from hf_hybrid.training_args import DataArguments, HybridTrainingArguments, ModelArguments

    from .common import parse_train_flags

    output_dir = args.model_output_dir or args.workdir / "hf_hybrid_model"
    flags = [
        "--train_file",
        str(args.data),
        "--output_dir",
        str(output_dir),
        "--seed",
        "42",
        "--split_seed",
        "42",
        "--disable_tqdm",
        "true",
    ]
    model, data, training = parse_train_flags(
        flags + shlex.split(args.train_flags), (ModelArguments, DataArguments, HybridTrainingArguments)
    )
    started = time.perf_counter()
    if args.reuse_trained:
        report = reused_report(output_dir, model, training)
    else:
        report = train_model(model, data, training)
    history = json.loads((output_dir / "eval_results.json").read_text())
    best = next(key for key in history if key.startswith("best_validation_"))
    multi_label = model.problem_type == MULTI_LABEL
    hybrid = {
        **(multi_label_scores if multi_label else scores)(report, started),
        "epochs_trained": history["epochs_trained"],
        best: history[best],
    }
    if args.reuse_trained:
        hybrid["wall_time_s"] = None  # trained by an earlier run
    splits = load_papers(data, seed=training.seed, multi_label=multi_label)
    baselines = (
        {"tfidf_one_vs_rest": tfidf_one_vs_rest(splits)}
        if multi_label
        else {
            "tfidf_linear_svm": tfidf_linear_svm(splits),
            "tfidf_logistic_regression": tfidf_logistic_regression(splits),
        }
    )
    return {
        "question": "accuracy",
        "data": str(args.data),
        "test_papers": report["num_samples"],
        "label_names": report["label_names"],
        "train_flags": args.train_flags,
        "multi_label": multi_label,
        "hf_hybrid": hybrid,
        **baselines,
    }


def reused_report(output_dir: Path, model, training) -> dict:
    """The test report of the finished run in `output_dir`, refused unless it was trained with the seed, problem type
    and model flags that these flags give."""
    config = json.loads((output_dir / "config.json").read_text())
    settings = json.loads((output_dir / "training_args.json").read_text())
    expected = {
        "seed": (settings.get("seed"), training.seed),
        "problem_type": (config.get("problem_type"), model.problem_type),
        **{
            name: (config.get(name), value)
            for name, value in model.config_values().items()
            if name in ("embed_dim", "wide_branch", "lstm_hidden", "num_filters")
        },
    }
    differing = [
        f"--{name} {saved} (the flags give {given})" for name, (saved, given) in expected.items() if saved != given
    ]
    if differing:
        raise SystemExit(f"--reuse_trained: {output_dir} was trained otherwise: {'; '.join(differing)}")
    return json.loads((output_dir / "eval_results.json").read_text())["test"]


def tfidf_features(splits):
    """Word 1-2 gram TF-IDF rows of the training and test splits (title and abstract as one text)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def texts(split):
        return [f"{title} . {abstract}" for title, abstract in zip(split["title"], split["abstract"])]

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    return vectorizer.fit_transform(texts(splits["train"])), vectorizer.transform(texts(splits["test"]))


def tfidf_linear_svm(splits) -> dict:
    """Fits word 1-2 gram TF-IDF + LinearSVC on the training split; scores its decisions on the test split (no
    probabilities, so no calibration error)."""
    from sklearn.svm import LinearSVC

    from hf_hybrid.evaluation import evaluation_report

    started = time.perf_counter()
    train, test = tfidf_features(splits)
    decisions = LinearSVC(C=0.5).fit(train, splits["train"]["labels"]).decision_function(test)
    if decisions.ndim == 1:  # two classes: one signed distance
        decisions = np.stack([-decisions, decisions], axis=1)
    names = splits["test"].features["labels"].names
    return {**scores(evaluation_report(splits["test"]["labels"], decisions, names), started), "ece": None}


def tfidf_logistic_regression(splits) -> dict:
    """Fits word 1-2 gram TF-IDF + logistic regression (C = 10) on the training split; scores its probabilities on
    the test split, their calibration error included."""
    from sklearn.linear_model import LogisticRegression

    from hf_hybrid.evaluation import evaluation_report

    started = time.perf_counter()
    train, test = tfidf_features(splits)
    classifier = LogisticRegression(C=10.0, max_iter=1000).fit(train, splits["train"]["labels"])
    log_probabilities = classifier.predict_log_proba(test)  # whose softmax `evaluation_report` takes back
    names = splits["test"].features["labels"].names
    return scores(evaluation_report(splits["test"]["labels"], log_probabilities, names), started)


def tfidf_one_vs_rest(splits, threshold: float = 0.3) -> dict:
    """Fits word 1-2 gram TF-IDF + one-vs-rest logistic regression on the training split; on the test split, a paper
    gets every label of probability `threshold` or more, and at least its most probable one."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from hf_hybrid.evaluation import evaluation_report
    from hf_hybrid.tables import label_names_of

    started = time.perf_counter()

    def texts(split):
        return [f"{title} . {abstract}" for title, abstract in zip(split["title"], split["abstract"])]

    names = label_names_of(splits["train"])

    def multi_hot(split):
        return np.array([[int(i in ids) for i in range(len(names))] for ids in split["labels"]])

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    classifier = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=1000))
    classifier.fit(vectorizer.fit_transform(texts(splits["train"])), multi_hot(splits["train"]))
    probability = np.clip(classifier.predict_proba(vectorizer.transform(texts(splits["test"]))), 1e-12, 1 - 1e-12)
    logits = np.log(probability / (1 - probability))  # whose sigmoid `evaluation_report` takes back
    report = evaluation_report(multi_hot(splits["test"]), logits, names, [threshold] * len(names))
    return multi_label_scores(report, started)


def multi_label_scores(report: dict, started: float) -> dict:
    """The multi-label benchmark's figures from an `evaluation_report`, and the seconds since `started`."""
    return {
        **{name: report[name] for name in ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy")},
        "per_label_f1": {name: scores["f1-score"] for name, scores in report["per_class"].items()},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }


def scores(report: dict, started: float) -> dict:
    """The benchmark's figures from an `evaluation_report`, and the seconds since `started`."""
    names = report["label_names"]
    return {
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "cs_ai_recall": report["per_class"]["cs.AI"]["recall"] if "cs.AI" in names else None,
        "ece": report["expected_calibration_error"],
        "wall_time_s": round(time.perf_counter() - started, 1),
        "confusion_matrix": report["confusion_matrix"],
        "most_confused_pair": most_confused_pair(report["confusion_matrix"], names),
    }


def most_confused_pair(matrix, names) -> dict:
    """The two classes most often mistaken for each other (both directions), and their share of all errors."""
    size = len(names)
    errors = sum(matrix[i][j] for i in range(size) for j in range(size) if i != j)
    count, first, second = max((matrix[i][j] + matrix[j][i], i, j) for i in range(size) for j in range(i + 1, size))
    return {
        "pair": [names[first], names[second]],
        "errors": count,
        "share_of_errors": count / errors if errors else 0.0,
    }


def table(results: dict) -> str:
    if results.get("multi_label"):
        return multi_label_table(results)
    rows = [
        "| model | test accuracy | macro-F1 | ECE | cs.AI recall | most confused pair (share of errors) | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    hybrid = f"hf-hybrid ({results['train_flags'] or 'defaults'})"
    models = (
        (hybrid, "hf_hybrid"),
        ("TF-IDF 1-2 grams + LinearSVC", "tfidf_linear_svm"),
        ("TF-IDF 1-2 grams + logistic regression", "tfidf_logistic_regression"),
    )
    for name, key in models:
        entry = results[key]
        recall = "n/a" if entry["cs_ai_recall"] is None else f"{entry['cs_ai_recall']:.4f}"
        ece = "no probabilities" if entry["ece"] is None else f"{entry['ece']:.4f}"
        pair = entry["most_confused_pair"]
        rows.append(
            f"| {name} | {entry['accuracy']:.4f} | {entry['f1_macro']:.4f} | {ece} | {recall} "
            f"| {' / '.join(pair['pair'])} ({pair['share_of_errors']:.0%}) | {wall_time(entry)} |"
        )
    rows.append(
        f"\n{results['test_papers']} test papers; hf-hybrid trained {results['hf_hybrid']['epochs_trained']:g} epochs."
    )
    return "\n".join(rows)


def multi_label_table(results: dict) -> str:
    rows = ["| model | micro-F1 | macro-F1 | samples-F1 | subset accuracy | wall time |", "|---|---|---|---|---|---|"]
    hybrid = f"hf-hybrid ({results['train_flags'] or 'defaults'})"
    baseline = "TF-IDF 1-2 grams + one-vs-rest logistic regression (labels >= 0.3)"
    for name, key in ((hybrid, "hf_hybrid"), (baseline, "tfidf_one_vs_rest")):
        entry = results[key]
        rows.append(
            f"| {name} | {entry['f1_micro']:.4f} | {entry['f1_macro']:.4f} | {entry['f1_samples']:.4f} "
            f"| {entry['subset_accuracy']:.4f} | {wall_time(entry)} |"
        )
    rows.append(
        f"\n{results['test_papers']} test papers; hf-hybrid trained {results['hf_hybrid']['epochs_trained']:g} epochs."
    )
    return "\n".join(rows)


def wall_time(entry: dict) -> str:
    return "n/a (trained earlier)" if entry["wall_time_s"] is None else f"{entry['wall_time_s']:.0f} s"
