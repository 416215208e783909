"""The figures a training run leaves in its output folder, as PNG files.

matplotlib is imported when a figure is drawn, not when this module is.
"""

from pathlib import Path

import numpy as np
import torch

from .plot_files import ATTENTION_PLOT, CALIBRATION_PLOT, CONFUSION_PLOT, HISTORY_PLOT, LABEL_F1_PLOT

__all__ = [
    "ATTENTION_PLOT",
    "CALIBRATION_PLOT",
    "CONFUSION_PLOT",
    "HISTORY_PLOT",
    "LABEL_F1_PLOT",
    "epoch_history",
    "plot_attention",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_history",
    "plot_label_f1",
]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (training often runs with no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def epoch_history(log_history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(epoch, value) series of train/validation loss and accuracy from `Trainer.state.log_history`."""
    keys = {
        "loss": "train_loss",
        "train_accuracy": "train_accuracy",
        "eval_loss": "validation_loss",
        "eval_accuracy": "validation_accuracy",
        "eval_f1_micro": "validation_f1_micro",
    }
    series = {name: [] for name in keys.values()}
    for entry in log_history:
        for key, name in keys.items():
            if key in entry and "epoch" in entry:
                series[name].append((entry["epoch"], entry[key]))
    return series


def plot_history(log_history: list[dict], path: Path) -> Path:
    plt = _pyplot()
    series = epoch_history(log_history)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    # A multi-label model's epochs are compared by micro-F1, a single-label model's by accuracy.
    score = "f1_micro" if series["validation_f1_micro"] else "accuracy"
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, score)):
        for split in ("train", "validation"):
            points = series.get(f"{split}_{metric}")
            if points:
                axis.plot(*zip(*points), marker="o", label=split)
        axis.set(title=metric.capitalize(), xlabel="epoch")
        axis.grid(True, alpha=0.3)
        axis.legend()
    return _save(figure, path)


def plot_confusion_matrix(matrix: list[list[int]], label_names: list[str], path: Path) -> Path:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(1.2 * len(label_names) + 3, 1.2 * len(label_names) + 2))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    ticks = range(len(label_names))
    axis.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=label_names,
        yticklabels=label_names,
        xlabel="predicted",
        ylabel="true",
        title="Test confusion matrix",
    )
    plt.setp(axis.get_xticklabels(), rotation=45, ha="right")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, int(count), ha="center", va="center", color=color)
    return _save(figure, path)


def plot_label_f1(per_class: dict[str, dict], path: Path) -> Path:
    """A multi-label model's test F1 per label, most frequent label first, with each label's number of papers."""
    plt = _pyplot()
    ranked = sorted(per_class.items(), key=lambda item: -item[1]["support"])
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(ranked) + 1.5))
    positions = range(len(ranked))
    axis.barh(positions, [scores["f1-score"] for _, scores in ranked], color="tab:blue")
    axis.set(
        yticks=positions,
        yticklabels=[f"{name} ({int(scores['support'])})" for name, scores in ranked],
        xlim=(0, 1),
        xlabel="F1 on the test split",
        title="Test F1 per label (papers)",
    )
    axis.invert_yaxis()
    axis.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)


def plot_calibration(curves: dict[str, list[dict]], path: Path) -> Path:
    """A reliability diagram: each curve's accuracy against its mean top probability, bin by bin (the metric
    module's `calibration_bins`), beside the diagonal of perfect calibration."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, bins in curves.items():
        filled = [b for b in bins if b["count"]]
        axis.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], marker="o", label=name)
    axis.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="top probability (mean of the bin)",
        ylabel="accuracy of the bin",
        title="Reliability on the test split",
    )
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left")
    return _save(figure, path)


@torch.inference_mode()
def plot_attention(model, tokenizer, title: str, abstract: str, path: Path, max_abstract_words: int = 60) -> Path:
    """Title and abstract attention of one paper, word by word, with the fusion weights: the notebook's plot."""
    model.eval()
    inputs = tokenizer(title, abstract, return_tensors="pt").to(next(model.parameters()).device)
    output = model(**inputs, output_attentions=True)
    title_attention, abstract_attention, fusion = (
        output[name][0].float().cpu().numpy() for name in ("title_attention", "abstract_attention", "fusion_weights")
    )
    predicted = model.config.id2label[int(output.logits.argmax())]
    title_words = tokenizer.split_words(title, "title")
    abstract_words = tokenizer.split_words(abstract, "abstract")[:max_abstract_words]

    plt = _pyplot()
    figure, (title_axis, abstract_axis) = plt.subplots(2, 1, figsize=(max(10, 0.22 * len(abstract_words)), 7))
    for axis, words, weights, name in (
        (title_axis, title_words, title_attention, "Title"),
        (abstract_axis, abstract_words, abstract_attention, "Abstract"),
    ):
        axis.bar(range(len(words)), weights[: len(words)])
        axis.set_xticks(range(len(words)), words, rotation=70, fontsize=8)
        axis.set_ylabel("attention")
        axis.set_title(f"{name} attention")
    figure.suptitle(f"Predicted {predicted}; fusion weights: title {fusion[0]:.2f}, abstract {fusion[1]:.2f}")
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return Path(path)
