"""Predictions and metrics: accuracy, macro and weighted F1, a per-class report, a confusion matrix, and the
calibration of the predicted probabilities (expected calibration error, log-loss, Brier score).

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

METRIC_PATH = Path(__file__).parent / "metrics" / "classification_report"
SUMMARY_METRICS = ("accuracy", "f1_macro", "f1_weighted")
CALIBRATION_METRICS = ("expected_calibration_error", "log_loss", "brier_score", "mean_confidence")


@cache
def classification_metric() -> evaluate.EvaluationModule:
    """The packaged metric module, loaded once per process from its local folder (never from the Hub)."""
    # keep_in_memory: predictions are gathered in memory, with no cache file per evaluation
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def classification_scores(labels, logits, label_names: list[str], with_calibration: bool = False) -> dict:
    """The metric module's scores of the argmax of `logits` against `labels` (and of their softmax's calibration)."""
    predicted = np.argmax(logits, axis=-1)
    extra = {"probabilities": probabilities(logits).tolist()} if with_calibration else {}
    return classification_metric().compute(
        predictions=predicted, references=np.asarray(labels), label_names=list(label_names), **extra
    )


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """The `Trainer`'s metrics: what early stopping and the plateau scheduler watch."""
    class_ids = [str(i) for i in range(prediction.predictions.shape[-1])]
    scores = classification_scores(prediction.label_ids, prediction.predictions, class_ids)
    return {name: scores[name] for name in SUMMARY_METRICS}


@torch.inference_mode()
def predict_logits(model, tokenizer, dataset, batch_size: int = 128, description: str = "Predicting") -> np.ndarray:
    """Logits of `model` for every row of a tokenized dataset, in order, padded per batch."""
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


def evaluation_report(labels, logits, label_names: list[str]) -> dict:
    """Summary and calibration metrics of the probabilities `softmax(logits)`, per-class precision/recall/F1, the
    confusion matrix, the reliability bins and the coverage at the usual thresholds, as JSON-ready data."""
    scores = classification_scores(labels, logits, label_names, with_calibration=True)
    return {
        **{name: scores[name] for name in SUMMARY_METRICS + CALIBRATION_METRICS},
        "calibration_bins": scores["calibration_bins"],
        "coverage": coverage_table(logits, labels),
        "num_samples": int(len(labels)),
        "per_class": scores["per_class"],
        "confusion_matrix": scores["confusion_matrix"],
        "label_names": list(label_names),
    }


def report_text(labels, logits, label_names: list[str]) -> str:
    """scikit-learn's classification report, as written to `classification_report.txt`."""
    predicted = np.argmax(logits, axis=-1)
    return classification_report(
        labels, predicted, labels=list(range(len(label_names))), target_names=label_names, digits=4, zero_division=0
    )


def metrics_table(report: dict) -> str:
    """A Markdown table of a report's metrics, for the terminal and the model card."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {report[name]:.4f} |" for name in SUMMARY_METRICS + CALIBRATION_METRICS if name in report]
    lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, scores in report["per_class"].items():
        lines.append(
            f"| {name} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1-score']:.4f} "
            f"| {int(scores['support'])} |"
        )
    return "\n".join(lines)
