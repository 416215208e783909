"""Classification report: accuracy, macro and weighted F1, per-class precision/recall/F1, the confusion matrix and,
given the predicted probabilities, how well calibrated they are (expected calibration error, log-loss, Brier score).

An `evaluate` metric module that ships inside hf-hybrid and is loaded from its folder, so it needs no
network (a metric named by the Hub, such as `evaluate.load("accuracy")`, is downloaded first). scikit-learn
computes every number. It is loaded by its path; `evaluate` copies it into its modules cache to import it:

```python
>>> import evaluate
>>> from hf_hybrid.evaluation import METRIC_PATH
>>> metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)
>>> scores = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], label_names=["cs.AI", "cs.CL"])
>>> scores["accuracy"], scores["confusion_matrix"]
(0.6666666666666666, [[1, 1], [0, 1]])
>>> scores = metric.compute(predictions=[0, 1], references=[0, 0], label_names=["cs.AI", "cs.CL"],
...                         probabilities=[[0.9, 0.1], [0.4, 0.6]])
>>> round(scores["expected_calibration_error"], 4), round(scores["brier_score"], 4)
(0.35, 0.37)
```

The `multilabel` configuration (as `evaluate.load("f1", "multilabel")`) scores papers that each have any number of
labels, given as 0/1 rows, one column per label:

```python
>>> metric = evaluate.load(str(METRIC_PATH), "multilabel", keep_in_memory=True)
>>> scores = metric.compute(predictions=[[1, 1], [0, 1]], references=[[1, 0], [0, 1]], label_names=["cs.AI", "cs.CL"])
>>> scores["f1_micro"], scores["subset_accuracy"]
(0.8, 0.5)
```
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

MULTILABEL = "multilabel"

# Equal-width bins of the top probability, as Guo et al. (2017) measure the expected calibration error.
CALIBRATION_BINS = 15

_DESCRIPTION = __doc__.split("\n\n")[0]

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    label_names (`list` of `str`): the name of each class id, in order; every class is reported, including
        classes that neither list contains.
    probabilities (`list` of `list` of `float`, *optional*): each paper's probability of every class (rows sum
        to 1), whose argmax is its prediction; adds the calibration scores.
Returns:
    accuracy (`float`), f1_macro (`float`), f1_weighted (`float`): F1 averages over the classes that the
        references or the predictions contain;
    per_class (`dict`): for each label name, its precision, recall, f1-score and support (true papers);
    confusion_matrix (`list` of `list` of `int`): row i, column j counts papers of class i predicted as j;
    with `probabilities`: expected_calibration_error (`float`: the papers' share-weighted gap between the mean top
        probability and the accuracy over 15 equal-width bins of the top probability), log_loss (`float`: the mean
        negative log-likelihood of the true class), brier_score (`float`: the mean squared distance between the
        probabilities and the one-hot truth, summed over the classes), mean_confidence (`float`: the mean top
        probability) and calibration_bins (`list` of `dict`: each bin's lower and upper edge, papers, mean top
        probability and accuracy).

With the `multilabel` configuration, `predictions` and `references` are rows of 0/1, one per label, and the
returned scores are subset_accuracy (`float`: the share of papers whose labels are all exactly right),
f1_micro, f1_macro, f1_samples (`float`: F1 over every (paper, label) decision, averaged over the labels, and
averaged over the papers), per_class (as above, support: the papers of each label) and, with `probabilities` (each
label's own probability, a row need not sum to 1): expected_calibration_error (15 equal-width bins of every
(paper, label) probability, against the share of them that are true), log_loss (the mean binary cross-entropy of
every (paper, label)), brier_score (the squared distances to the 0/1 truth, summed over the labels, mean over the
papers) and calibration_bins (as above: confidence is the bin's mean probability, accuracy its share of true
labels).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationReport(evaluate.Metric):
    def _info(self):
        value = datasets.Value("int64")
        column = datasets.Sequence(value) if self.config_name == MULTILABEL else value
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": column, "references": column}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, label_names, probabilities=None):
        if self.config_name == MULTILABEL:
            return multi_label_scores(np.asarray(predictions), np.asarray(references), label_names, probabilities)
        ids = list(range(len(label_names)))
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=ids, zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1_macro": float(f1_score(references, predictions, average="macro", zero_division=0)),
            "f1_weighted": float(f1_score(references, predictions, average="weighted", zero_division=0)),
            "per_class": {
                name: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1-score": float(f1[i]),
                    "support": float(support[i]),
                }
                for i, name in enumerate(label_names)
            },
            "confusion_matrix": confusion_matrix(references, predictions, labels=ids).tolist(),
            **({} if probabilities is None else calibration_scores(probabilities, predictions, references, ids)),
        }


def multi_label_scores(predictions, references, label_names, probabilities=None) -> dict:
    if predictions.shape != references.shape or predictions.ndim != 2 or predictions.shape[1] != len(label_names):
        raise ValueError(
            f"predictions and references must be rows of one 0/1 per label ({len(label_names)}), got "
            f"shapes {predictions.shape} and {references.shape}"
        )
    precision, recall, f1, support = precision_recall_fscore_support(references, predictions, zero_division=0)
    scores = {
        "subset_accuracy": float(accuracy_score(references, predictions)),
        **{
            f"f1_{average}": float(f1_score(references, predictions, average=average, zero_division=0))
            for average in ("micro", "macro", "samples")
        },
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1-score": float(f1[i]),
                "support": float(support[i]),
            }
            for i, name in enumerate(label_names)
        },
    }
    if probabilities is None:
        return scores
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != references.shape:
        raise ValueError(
            f"probabilities must be one row of {len(label_names)} per paper, got shape {probabilities.shape}"
        )
    clipped = np.clip(probabilities, 1e-15, 1 - 1e-15)
    expected_error, bins = reliability(probabilities.ravel(), references.ravel().astype(bool))
    return {
        **scores,
        "expected_calibration_error": expected_error,
        "log_loss": float(-(references * np.log(clipped) + (1 - references) * np.log(1 - clipped)).mean()),
        "brier_score": float(((probabilities - references) ** 2).sum(axis=1).mean()),
        "calibration_bins": bins,
    }


def reliability(confidence, correct) -> tuple[float, list[dict]]:
    """The expected calibration error of `confidence` (how sure each prediction is) against `correct` (whether it
    was right), over equal-width bins, and the bins."""
    # A bin holds the confidences in (lower, upper]; the first also holds 0.
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, CALIBRATION_BINS - 1)
    bins, gap = [], 0.0
    for index in range(CALIBRATION_BINS):
        members = bin_of == index
        count = int(members.sum())
        mean_confidence = float(confidence[members].mean()) if count else None
        accuracy = float(correct[members].mean()) if count else None
        if count:
            gap += count * abs(mean_confidence - accuracy)
        bins.append(
            {
                "lower": float(edges[index]),
                "upper": float(edges[index + 1]),
                "count": count,
                "confidence": mean_confidence,
                "accuracy": accuracy,
            }
        )
    return gap / len(confidence), bins


def calibration_scores(probabilities, predictions, references, ids) -> dict:
    probabilities, references = np.asarray(probabilities, dtype=np.float64), np.asarray(references)
    if probabilities.shape != (len(references), len(ids)):
        raise ValueError(f"probabilities must be one row of {len(ids)} per paper, got shape {probabilities.shape}")
    if not np.array_equal(probabilities.argmax(axis=1), np.asarray(predictions)):
        raise ValueError("predictions must be the argmax of probabilities")
    confidence = probabilities.max(axis=1)
    expected_error, bins = reliability(confidence, np.asarray(predictions) == references)
    one_hot = np.eye(len(ids))[references]
    return {
        "expected_calibration_error": expected_error,
        "log_loss": float(log_loss(references, np.clip(probabilities, 1e-15, 1.0), labels=ids)),
        "brier_score": float(((probabilities - one_hot) ** 2).sum(axis=1).mean()),
        "mean_confidence": float(confidence.mean()),
        "calibration_bins": bins,
    }
