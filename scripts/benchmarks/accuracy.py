"""Accuracy against TF-IDF + LinearSVC: hf-hybrid trained as `hf-hybrid train` trains, on the same split.

hf-hybrid's run is `hf-hybrid train` with `--train_flags` added (any of its flags: `"--recipe notebook"`,
`"--num_train_epochs 2"`, `"--seed 43"`, `"--max_train_samples 1000"`, `"--resume_from_checkpoint DIR"`); its
split is seed 42's unless the flags set `--split_seed`. Word 1-2 gram TF-IDF + LinearSVC is fitted on the same
training papers in the same run. Both are scored on the test split by `hf_hybrid.evaluation`: accuracy,
macro-F1, cs.AI recall (the class the notebook struggled with), the most confused pair of classes, wall time.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--train_flags", default="", help="more `hf-hybrid train` flags for hf-hybrid's run")
    parser.add_argument("--model_output_dir", type=Path, default=None,
                        help="where the trained hf-hybrid model goes (default: inside --workdir)")


def run(args) -> dict:
    from hf_hybrid.data import load_papers
    from hf_hybrid.trainer import train_model
    from hf_hybrid.training_args import DataArguments, HybridTrainingArguments, ModelArguments

    from .common import parse_train_flags

    output_dir = args.model_output_dir or args.workdir / "hf_hybrid_model"
    flags = ["--train_file", str(args.data), "--output_dir", str(output_dir), "--seed", "42", "--split_seed", "42",
             "--disable_tqdm", "true"]
    model, data, training = parse_train_flags(flags + shlex.split(args.train_flags),
                                              (ModelArguments, DataArguments, HybridTrainingArguments))
    started = time.perf_counter()
    report = train_model(model, data, training)
    history = json.loads((output_dir / "eval_results.json").read_text())
    hybrid = {**scores(report, started), "epochs_trained": history["epochs_trained"],
              "best_validation_accuracy": history["best_validation_accuracy"]}
    baseline = tfidf_linear_svm(load_papers(data, seed=training.seed))
    return {"question": "accuracy", "data": str(args.data), "test_papers": report["num_samples"],
            "label_names": report["label_names"], "train_flags": args.train_flags,
            "hf_hybrid": hybrid, "tfidf_linear_svm": baseline}


def tfidf_linear_svm(splits) -> dict:
    """Fits word 1-2 gram TF-IDF + LinearSVC on the training split; scores its decisions on the test split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from hf_hybrid.evaluation import evaluation_report

    started = time.perf_counter()

    def texts(split):
        return [f"{title} . {abstract}" for title, abstract in zip(split["title"], split["abstract"])]

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    classifier = LinearSVC(C=0.5).fit(vectorizer.fit_transform(texts(splits["train"])), splits["train"]["labels"])
    decisions = classifier.decision_function(vectorizer.transform(texts(splits["test"])))
    if decisions.ndim == 1:  # two classes: one signed distance
        decisions = np.stack([-decisions, decisions], axis=1)
    names = splits["test"].features["labels"].names
    return scores(evaluation_report(splits["test"]["labels"], decisions, names), started)


def scores(report: dict, started: float) -> dict:
    """The benchmark's figures from an `evaluation_report`, and the seconds since `started`."""
    names = report["label_names"]
    return {
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "cs_ai_recall": report["per_class"]["cs.AI"]["recall"] if "cs.AI" in names else None,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "confusion_matrix": report["confusion_matrix"],
        "most_confused_pair": most_confused_pair(report["confusion_matrix"], names),
    }


def most_confused_pair(matrix, names) -> dict:
    """The two classes most often mistaken for each other (both directions), and their share of all errors."""
    size = len(names)
    errors = sum(matrix[i][j] for i in range(size) for j in range(size) if i != j)
    count, first, second = max((matrix[i][j] + matrix[j][i], i, j) for i in range(size) for j in range(i + 1, size))
    return {"pair": [names[first], names[second]], "errors": count,
            "share_of_errors": count / errors if errors else 0.0}


def table(results: dict) -> str:
    rows = ["| model | test accuracy | macro-F1 | cs.AI recall | most confused pair (share of errors) | wall time |",
            "|---|---|---|---|---|---|"]
    hybrid = f"hf-hybrid ({results['train_flags'] or 'defaults'})"
    for name, key in ((hybrid, "hf_hybrid"), ("TF-IDF 1-2 grams + LinearSVC", "tfidf_linear_svm")):
        entry = results[key]
        recall = "n/a" if entry["cs_ai_recall"] is None else f"{entry['cs_ai_recall']:.4f}"
        pair = entry["most_confused_pair"]
        rows.append(f"| {name} | {entry['accuracy']:.4f} | {entry['f1_macro']:.4f} | {recall} "
                    f"| {' / '.join(pair['pair'])} ({pair['share_of_errors']:.0%}) | {entry['wall_time_s']:.0f} s |")
    rows.append(f"\n{results['test_papers']} test papers; hf-hybrid trained {results['hf_hybrid']['epochs_trained']:g} "
                "epochs.")
    return "\n".join(rows)
