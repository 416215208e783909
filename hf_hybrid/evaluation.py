"""Predictions and metrics: accuracy, macro and weighted F1, a per-class report, a confusion matrix, and the
calibration of the predicted probabilities (expected calibration error, log-loss, Brier score); for a multi-label
model (multi-hot labels, one 0/1 row per paper), micro, macro and samples F1, subset accuracy and per-label scores.

Every metric comes from the `evaluate` metric module that ships in the package
(`hf_hybrid/metrics/classification_report`, scikit-learn underneath), loaded from its folder: no network.
"""

from functools import cache
from pathlib import Path

import evaluate
import numpy as np
import torch
from sklearn.metrics import classification_report
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, EvalPrediction

from .calibration import coverage_table, probabilities
from .model.pipeline_arxiv_classification import decide_labels

METRIC_PATH = Path(__file__).parent / "metrics" / "classification_report"
MULTILABEL = "multilabel"
SUMMARY_METRICS = ("accuracy", "f1_macro", "f1_weighted")
MULTI_LABEL_METRICS = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy")
CALIBRATION_METRICS = ("expected_calibration_error", "log_loss", "brier_score", "mean_confidence")
# What the `Trainer` picks the best epoch by when `--metric_for_best_model` is left at `accuracy`.
BEST_MULTI_LABEL_METRIC = "f1_micro"


@cache
def classification_metric(config_name: str | None = None) -> evaluate.EvaluationModule:
    """The packaged metric module (its `multilabel` configuration for multi-hot labels), loaded once per process
    from its local folder (never from the Hub)."""
    # keep_in_memory: predictions are gathered in memory, with no cache file per evaluation
    return evaluate.load(str(METRIC_PATH), config_name, keep_in_memory=True)


def is_multi_label(labels) -> bool:
    """Whether `labels` are multi-hot rows (a multi-label model's) rather than class ids."""
    return np.ndim(labels) == 2


def classification_scores(
    labels, logits, label_names: list[str], with_calibration: bool = False, thresholds: list[float] | None = None
) -> dict:
    """The metric module's scores of the model's decisions against `labels` (and of their probabilities'
    calibration): the argmax of `logits`, or for multi-hot `labels`, every label whose sigmoid reaches its threshold
    (`thresholds`, else 0.5), at least the most probable one, as the pipelines decide."""
    multi_label = is_multi_label(labels)
    probability = probabilities(logits, multi_label=multi_label)
    if multi_label:
        predicted = decide_labels(probability, thresholds or [0.5] * len(label_names)).numpy().astype(np.int64)
        labels = np.asarray(labels).round().astype(np.int64)
    else:
        predicted = np.argmax(logits, axis=-1)
    extra = {"probabilities": probability.tolist()} if with_calibration else {}
    metric = classification_metric(MULTILABEL) if multi_label else classification_metric()
    return metric.compute(predictions=predicted, references=np.asarray(labels), label_names=list(label_names), **extra)


def summary_metrics(labels) -> tuple[str, ...]:
    return MULTI_LABEL_METRICS if is_multi_label(labels) else SUMMARY_METRICS


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """The `Trainer`'s metrics: what early stopping and the plateau scheduler watch (of the logits, where the
    predictions also hold other outputs)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    class_ids = [str(i) for i in range(logits.shape[-1])]
    scores = classification_scores(prediction.label_ids, logits, class_ids)
    return {name: scores[name] for name in summary_metrics(prediction.label_ids)}


@torch.inference_mode()
def predict_logits(model, tokenizer, dataset, batch_size: int = 128, description: str = "Predicting") -> np.ndarray:
    """Logits of `model` for every row of a tokenized dataset, in order, padded per batch.

    Example (what `hf-hybrid evaluate` does, with `tokenize_papers` of `hf_hybrid.data`):

    ```python
    >>> from hf_hybrid import evaluation_report, predict_logits
    >>> logits = predict_logits(model, tokenizer, tokenized)  # doctest: +SKIP
    >>> report = evaluation_report(tokenized["labels"], logits, list(model.config.id2label.values()))  # doctest: +SKIP
    >>> report["accuracy"], report["expected_calibration_error"]  # doctest: +SKIP
    ```
    """
    columns = [name for name in tokenizer.model_input_names if name in dataset.column_names]
    loader = DataLoader(
        dataset.select_columns(columns), batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer)
    )
    model.eval()
    device = next(model.parameters()).device
    logits = [
        model(**{key: value.to(device) for key, value in batch.items()}).logits.float().cpu()
        for batch in tqdm(loader, desc=description, leave=False)
    ]
    return torch.cat(logits).numpy()


def evaluation_report(labels, logits, label_names: list[str], thresholds: list[float] | None = None) -> dict:
    """Summary and calibration metrics of the probabilities `softmax(logits)`, per-class precision/recall/F1, the
    confusion matrix, the reliability bins and the coverage at the usual thresholds, as JSON-ready data; for
    multi-hot `labels`, the multi-label scores of the decisions at `thresholds`, per-label scores and calibration."""
    scores = classification_scores(labels, logits, label_names, with_calibration=True, thresholds=thresholds)
    calibration = [name for name in CALIBRATION_METRICS if name in scores]
    report = {
        **{name: scores[name] for name in summary_metrics(labels) + tuple(calibration)},
        "calibration_bins": scores["calibration_bins"],
        "num_samples": int(len(labels)),
        "per_class": scores["per_class"],
        "label_names": list(label_names),
    }
    if is_multi_label(labels):
        return {**report, "thresholds": list(thresholds or [0.5] * len(label_names))}
    return {**report, "coverage": coverage_table(logits, labels), "confusion_matrix": scores["confusion_matrix"]}


def report_text(labels, logits, label_names: list[str], thresholds: list[float] | None = None) -> str:
    """scikit-learn's classification report, as written to `classification_report.txt` (per label, with the micro,
    macro and samples averages, for a multi-label model)."""
    if is_multi_label(labels):
        predicted = decide_labels(probabilities(logits, multi_label=True), thresholds or [0.5] * len(label_names))
        predicted, labels = predicted.numpy().astype(int), np.asarray(labels).round().astype(int)
    else:
        predicted = np.argmax(logits, axis=-1)
    return classification_report(
        labels, predicted, labels=list(range(len(label_names))), target_names=label_names, digits=4, zero_division=0
    )


def metrics_table(report: dict) -> str:
    """A Markdown table of a report's metrics, for the terminal and the model card."""
    lines = ["| metric | value |", "|---|---|"]
    names = SUMMARY_METRICS + MULTI_LABEL_METRICS + CALIBRATION_METRICS
    lines += [f"| {name} | {report[name]:.4f} |" for name in dict.fromkeys(names) if name in report]
    lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, scores in report["per_class"].items():
        lines.append(
            f"| {name} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1-score']:.4f} "
            f"| {int(scores['support'])} |"
        )
    return "\n".join(lines)
