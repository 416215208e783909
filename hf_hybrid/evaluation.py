"""Predictions and metrics: accuracy, macro and weighted F1, a per-class report, a confusion matrix.

Metrics come from scikit-learn, so evaluation needs no network (`evaluate.load` would fetch its
metric scripts from the Hub).
"""

import numpy as np
import torch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, EvalPrediction


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """The `Trainer`'s metrics: what early stopping and the plateau scheduler watch."""
    predicted = np.argmax(prediction.predictions, axis=-1)
    return summary_metrics(prediction.label_ids, predicted)


def summary_metrics(labels, predicted) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, predicted, average="weighted", zero_division=0)),
    }


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
    """Summary metrics plus per-class precision/recall/F1 and the confusion matrix, as JSON-ready data."""
    predicted = np.argmax(logits, axis=-1)
    ids = list(range(len(label_names)))
    per_class = classification_report(
        labels, predicted, labels=ids, target_names=label_names, output_dict=True, zero_division=0
    )
    return {
        **summary_metrics(labels, predicted),
        "num_samples": int(len(labels)),
        "per_class": {name: {k: float(v) for k, v in per_class[name].items()} for name in label_names},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=ids).tolist(),
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
    lines += [f"| {name} | {report[name]:.4f} |" for name in ("accuracy", "f1_macro", "f1_weighted")]
    lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, scores in report["per_class"].items():
        lines.append(
            f"| {name} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1-score']:.4f} "
            f"| {int(scores['support'])} |"
        )
    return "\n".join(lines)
