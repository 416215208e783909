"""Small data: a learning curve on categories the base model never saw, `hf-hybrid train` and `hf-hybrid
finetune` with their defaults against word 1-2 gram TF-IDF + logistic regression (C chosen by 5-fold
cross-validation from 1, 10 and 100, then fitted on every training paper).

The task comes from the multi-label file (`--data`, e.g. `arxiv_multilabel.csv`): the papers listed in exactly one
of `--categories`, that one as their label. A fixed share of each category (`--test_share`), drawn among the
papers that are not in `--base_data` (the file the base model was trained on, so fine-tuning cannot have seen
them), is the test set, kept out of every fit and the same for every run. For each N of `--per_category` and each
seed, N papers of each category (all that is left of a category that has fewer; `all`: every paper left) are
drawn from the rest, and the three are fitted on them and scored on the test set: accuracy, macro-F1, wall time
(a fresh `hf-hybrid` process each, imports included). `--base_model` (a trained folder or Hub repo) is what
`finetune` starts from; without it only `train` and TF-IDF run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CATEGORIES = ("cs.RO", "cs.CR", "cs.HC", "cs.SE", "cs.IR", "cs.SD", "cs.DC", "cs.DB")
EVERY_PAPER = "all"


def add_arguments(parser) -> None:
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES), help="the task's labels")
    parser.add_argument("--label_column", default="categories", help="--data's column of space-separated labels")
    parser.add_argument(
        "--base_data", type=Path, default=None, help="papers the base model trained on: kept out of the test set"
    )
    parser.add_argument("--base_model", default=None, help="the trained folder or Hub repo that finetune starts from")
    parser.add_argument("--test_share", type=float, default=0.2, help="of each category's papers, for the test set")
    parser.add_argument(
        "--per_category",
        nargs="+",
        default=["25", "100", "300", EVERY_PAPER],
        help=f"training papers per category, each a point of the curve ({EVERY_PAPER!r}: every paper left)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="one run of each point per seed")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=["train", "finetune"],
        default=["train", "finetune"],
        help="which hf-hybrid commands to run (finetune: with --base_model)",
    )
    parser.add_argument("--train_flags", default="", help="more `hf-hybrid train` flags")
    parser.add_argument("--finetune_flags", default="", help="more `hf-hybrid finetune` flags")


def run(args) -> dict:
    task = build_task(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    test_file = args.workdir / "test.csv"
    task["test"].to_csv(test_file, index=False)
    results = []
    for size in args.per_category:
        for seed in args.seeds:
            papers = draw_training_papers(task["pool"], size, seed)
            train_file = args.workdir / f"train-{size}-{seed}.csv"
            papers.to_csv(train_file, index=False)
            point = {"per_category": size, "seed": seed, "papers": len(papers)}
            point["tfidf_logistic_regression"] = cached(
                args.workdir / f"tfidf-{size}-{seed}.json", tfidf_logistic_regression, papers, task["test"]
            )
            commands = {}
            if "train" in args.methods:
                commands["train"] = ["train", *args.train_flags.split()]
            if args.base_model and "finetune" in args.methods:
                commands["finetune"] = ["finetune", "--model", args.base_model, *args.finetune_flags.split()]
            for name, command in commands.items():
                output_dir = args.workdir / f"{name}-{size}-{seed}"
                flags = [
                    *command,
                    "--train_file",
                    str(train_file),
                    "--output_dir",
                    str(output_dir),
                    "--seed",
                    str(seed),
                ]
                point[name] = hf_hybrid_run(flags, output_dir, test_file, args.threads)
            print(point_line(point), flush=True)
            results.append(point)
    return {
        "question": "small-data",
        "categories": list(args.categories),
        "test_papers": len(task["test"]),
        "pool_per_category": task["pool"]["category"].value_counts().to_dict(),
        "base_model": args.base_model,
        "train_flags": args.train_flags,
        "finetune_flags": args.finetune_flags,
        "points": results,
    }


def build_task(args) -> dict:
    """The labelled papers of the task: `test` (fixed, none of them in `--base_data`) and `pool` (the rest)."""
    import pandas as pd

    table = pd.read_csv(args.data)
    chosen = set(args.categories)

    def only_label(cell) -> str | None:
        listed = set(str(cell).split()) & chosen
        return next(iter(listed)) if len(listed) == 1 else None

    papers = table.assign(category=table[args.label_column].map(only_label)).dropna(subset=["category"])
    papers = papers[["title", "abstract", "category"]].reset_index(drop=True)
    unseen = np.ones(len(papers), dtype=bool)
    if args.base_data:
        seen_titles = set(pd.read_csv(args.base_data, usecols=["title"])["title"])
        unseen = ~papers["title"].isin(seen_titles).to_numpy()
    test = []
    for _, group in papers[unseen].groupby("category"):
        count = round(args.test_share * len(papers[papers["category"] == group["category"].iloc[0]]))
        test.append(group.sample(n=min(count, len(group)), random_state=0))
    test = pd.concat(test).sort_index()
    return {"test": test.reset_index(drop=True), "pool": papers.drop(index=test.index).reset_index(drop=True)}


def draw_training_papers(pool, size: str, seed: int):
    """`size` papers of each category of `pool` (all of a category with fewer; `all`: the whole pool), shuffled."""
    if size == EVERY_PAPER:
        return pool.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    count = int(size)
    drawn = [group.sample(n=min(count, len(group)), random_state=seed) for _, group in pool.groupby("category")]
    import pandas as pd

    return pd.concat(drawn).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def tfidf_logistic_regression(train, test) -> dict:
    """Word 1-2 gram TF-IDF + logistic regression, C chosen by stratified 5-fold cross-validation from 1, 10 and
    100 and fitted on all of `train`; its accuracy and macro-F1 on `test`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()

    def texts(papers):
        return [f"{title} . {abstract}" for title, abstract in zip(papers["title"], papers["abstract"])]

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode"),
        LogisticRegression(max_iter=2000),
    )
    search = GridSearchCV(pipeline, {"logisticregression__C": [1.0, 10.0, 100.0]}, cv=5, scoring="accuracy")
    search.fit(texts(train), train["category"])
    predicted = search.predict(texts(test))
    return {
        "accuracy": float(accuracy_score(test["category"], predicted)),
        "f1_macro": float(f1_score(test["category"], predicted, average="macro")),
        "C": search.best_params_["logisticregression__C"],
        "wall_time_s": round(time.perf_counter() - started, 1),
    }


def cached(path: Path, compute, *args) -> dict:
    """`compute(*args)`, or what an earlier run in the same `--workdir` saved at `path` (the same papers: the draws are
    seeded), so that another `--train_flags` does not fit the baseline again."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute(*args)
    path.write_text(json.dumps(result))
    return result


def hf_hybrid_run(flags: list[str], output_dir: Path, test_file: Path, threads: int) -> dict:
    """Runs `hf-hybrid FLAGS` in a fresh process, then `hf-hybrid evaluate` of its folder on `test_file`."""
    environment = {"OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    hf_hybrid(flags + ["--disable_tqdm", "true"], environment)
    wall_time = round(time.perf_counter() - started, 1)
    report_file = output_dir / "small_data_test.json"
    hf_hybrid(
        ["evaluate", "--model", str(output_dir), "--test_file", str(test_file), "--output_file", str(report_file)],
        environment,
    )
    report = json.loads(report_file.read_text())
    results = json.loads((output_dir / "eval_results.json").read_text())
    return {
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "expected_calibration_error": report.get("expected_calibration_error"),
        "epochs_trained": results.get("epochs_trained"),
        "wall_time_s": wall_time,
    }


def hf_hybrid(flags: list[str], environment: dict) -> None:
    import os

    command = [sys.executable, "-c", "import sys; from hf_hybrid.cli import main; sys.exit(main())", *flags]
    completed = subprocess.run(command, env={**os.environ, **environment}, capture_output=True, text=True)
    if completed.returncode:
        raise SystemExit(f"hf-hybrid {flags[0]} failed:\n{completed.stderr[-4000:]}")


def point_line(point: dict) -> str:
    parts = [f"N={point['per_category']} seed={point['seed']} ({point['papers']} papers)"]
    for name in ("tfidf_logistic_regression", "train", "finetune"):
        if name in point:
            entry = point[name]
            parts.append(f"{name} {entry['accuracy']:.3f}/{entry['f1_macro']:.3f} in {entry['wall_time_s']:.0f} s")
    return "; ".join(parts)


def table(report: dict) -> str:
    methods = [("TF-IDF + LR (C by CV)", "tfidf_logistic_regression")]
    methods += [(f"`hf-hybrid {name}`", name) for name in ("train", "finetune") if name in report["points"][0]]
    seeds = sorted({point["seed"] for point in report["points"]})
    header = " | ".join(f"{name}: acc / macro-F1 (seeds {' / '.join(map(str, seeds))})" for name, _ in methods)
    rows = [f"| papers per category (papers) | {header} | wall time ({', '.join(n for n, _ in methods[1:])}) |"]
    rows.append("|---" * (len(methods) + 2) + "|")
    for size in dict.fromkeys(point["per_category"] for point in report["points"]):
        points = [point for point in report["points"] if point["per_category"] == size]
        cells = []
        for _, key in methods:
            accuracy = " / ".join(f"{point[key]['accuracy']:.3f}" for point in points)
            f1 = " / ".join(f"{point[key]['f1_macro']:.3f}" for point in points)
            cells.append(f"{accuracy} ; {f1}")
        times = ", ".join(
            " / ".join(f"{point[key]['wall_time_s']:.0f} s" for point in points) for _, key in methods[1:]
        )
        rows.append(
            f"| {size} ({' / '.join(str(point['papers']) for point in points)}) | {' | '.join(cells)} | {times} |"
        )
    rows.append(f"\n{report['test_papers']} test papers, none of them in any fit.")
    return "\n".join(rows)
