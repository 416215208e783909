"""Accuracy benchmark: hf-hybrid trained with its defaults against TF-IDF + LinearSVC, on one split.

Run through `python scripts/benchmark.py --mode accuracy [--data CSV] [--num_train_epochs N] [--train_flags F]`;
`--max_rows` caps the training papers (the split is made first, so the test set stays the same), and
`--train_flags` passes any other `hf-hybrid train` flags (`"--recipe notebook"`, `"--wide_branch true"`).
Both models see the same stratified, seeded 70/15/15 split of the same papers (hf-hybrid's own split,
seed 42); both are scored on its test part: accuracy, macro-F1, cs.AI recall (the class the notebook
struggled with), and the wall time each took.
"""

import json
import shlex
import tempfile
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from sklearn.svm import LinearSVC

from hf_hybrid.data import load_papers
from hf_hybrid.trainer import train_model
from hf_hybrid.training_args import DataArguments, HybridTrainingArguments, ModelArguments, parse_training_arguments


def tfidf_svm_scores(splits) -> dict:
    """Fits word 1-2 gram TF-IDF + LinearSVC on the training split; scores it on the test split."""
    started = time.perf_counter()

    def texts(split):
        return [f"{title} . {abstract}" for title, abstract in zip(split["title"], split["abstract"])]

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    classifier = LinearSVC(C=0.5)
    classifier.fit(vectorizer.fit_transform(texts(splits["train"])), splits["train"]["labels"])
    predicted = classifier.predict(vectorizer.transform(texts(splits["test"])))
    return classification_scores(splits["test"]["labels"], predicted, splits["test"].features["labels"].names, started)


def classification_scores(labels, predicted, names, started) -> dict:
    """Accuracy, macro-F1, cs.AI recall (None without cs.AI), confusion matrix, and the seconds since `started`."""
    ai = names.index("cs.AI") if "cs.AI" in names else None
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro")),
        "cs_ai_recall": None if ai is None else float(recall_score(labels, predicted, labels=[ai], average="macro")),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(len(names)))).tolist(),
    }


def most_confused_pair(matrix, names) -> dict:
    """The two classes most often mistaken for each other (both directions), and their share of all errors."""
    size = len(names)
    errors = sum(matrix[i][j] for i in range(size) for j in range(size) if i != j)
    count, first, second = max((matrix[i][j] + matrix[j][i], i, j) for i in range(size) for j in range(i + 1, size))
    return {"pair": [names[first], names[second]], "errors": count, "share_of_errors": count / errors if errors else 0.0}


def run_accuracy(args) -> dict:
    """Trains and scores both models; `args` are `scripts/benchmark.py`'s (model size, epochs, seed, data)."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hf_hybrid_accuracy_"))
    output_dir = Path(args.model_output_dir or workdir / "hf_hybrid_model")
    flags = ["--train_file", str(args.data), "--output_dir", str(output_dir), "--seed", str(args.split_seed),
             "--split_seed", str(args.split_seed),
             "--disable_tqdm", str(not args.verbose), "--embed_dim", str(args.embed_dim),
             "--num_filters", str(args.num_filters), "--kernel_sizes", *map(str, args.kernel_sizes),
             "--lstm_hidden", str(args.lstm_hidden), "--classifier_hidden_sizes", *map(str, args.classifier_hidden_sizes),
             "--vocab_size", str(args.max_vocab_size), "--min_frequency", str(args.min_freq)]
    for flag in ("max_rows", "num_train_epochs", "resume_from_checkpoint"):
        if getattr(args, flag) is not None:
            flags += [f"--{'max_train_samples' if flag == 'max_rows' else flag}", str(getattr(args, flag))]
    model, data, training = parse_training_arguments(
        (ModelArguments, DataArguments, HybridTrainingArguments), flags + shlex.split(args.train_flags), prog="benchmark"
    )
    started = time.perf_counter()
    report = train_model(model, data, training)
    history = json.loads((output_dir / "eval_results.json").read_text())
    names = report["label_names"]
    hybrid = {
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "cs_ai_recall": report["per_class"]["cs.AI"]["recall"] if "cs.AI" in names else None,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "confusion_matrix": report["confusion_matrix"],
        "resumed_from": args.resume_from_checkpoint,
        "epochs_trained": history["epochs_trained"],
        "best_validation_accuracy": history["best_validation_accuracy"],
    }
    baseline = tfidf_svm_scores(load_papers(data, seed=args.split_seed))
    for scores in (hybrid, baseline):
        scores["most_confused_pair"] = most_confused_pair(scores["confusion_matrix"], names)
    results = {"data": str(args.data), "test_papers": report["num_samples"], "label_names": names,
               "train_flags": args.train_flags,
               "hf_hybrid": hybrid, "tfidf_linear_svm": baseline}
    print(accuracy_table(results))
    return results


def accuracy_table(results: dict) -> str:
    rows = ["| model | test accuracy | macro-F1 | cs.AI recall | most confused pair (share of errors) | wall time |",
            "|---|---|---|---|---|---|"]
    hybrid = f"hf-hybrid ({results['train_flags'] or 'defaults'})"
    for name, key in ((hybrid, "hf_hybrid"), ("TF-IDF 1-2 grams + LinearSVC", "tfidf_linear_svm")):
        scores = results[key]
        recall = "n/a" if scores["cs_ai_recall"] is None else f"{scores['cs_ai_recall']:.4f}"
        pair = scores["most_confused_pair"]
        rows.append(f"| {name} | {scores['accuracy']:.4f} | {scores['f1_macro']:.4f} | {recall} "
                    f"| {' / '.join(pair['pair'])} ({pair['share_of_errors']:.0%}) | {scores['wall_time_s']:.0f} s |")
    epochs = results["hf_hybrid"]["epochs_trained"]
    rows.append(f"\n{results['test_papers']} test papers; hf-hybrid trained {epochs:g} epochs.")
    return "\n".join(rows)
