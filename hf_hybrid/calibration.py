"""Post-hoc calibration of the classifier's probabilities: temperature scaling, and what its scores let a user decide.

Temperature scaling (Guo et al. 2017, arXiv:1706.04599) divides the model's raw scores by one number `T`,
fitted by log-likelihood on held-out papers. The model stores `T` in its config
(`calibration_temperature`) and divides by it in its own forward pass, so every consumer (pipelines,
`AutoModelForSequenceClassification`, ONNX) gets the calibrated probabilities through `softmax`. One
positive divisor never changes which label scores highest, so accuracy is unchanged.

Example:

```python
>>> import numpy as np
>>> from hf_hybrid.calibration import fit_temperature
>>> overconfident = np.tile([[6.0, 0.0], [0.0, 6.0], [6.0, 0.0], [0.0, 6.0]], (25, 1))  # each 0.998 sure
>>> temperature = fit_temperature(overconfident, np.tile([0, 1, 0, 0], 25))  # but 3 of 4 right
>>> round(temperature, 2), round(float(1 / (1 + np.exp(-6.0 / temperature))), 2)
(5.11, 0.76)
```
"""

import numpy as np
import torch
from torch import nn

from .model.configuration_hybrid_cnn_lstm import MAX_TEMPERATURE, MIN_TEMPERATURE
from .model.pipeline_arxiv_classification import decide_labels

TEMPERATURE = "temperature"
NO_CALIBRATION = "none"
CALIBRATION_METHODS = (TEMPERATURE, NO_CALIBRATION)
# The top-probability thresholds of the model card's coverage table.
COVERAGE_THRESHOLDS = (0.5, 0.7, 0.9)
# How a multi-label model's decision thresholds are set on the validation split (`--threshold_tuning`).
PER_LABEL = "per_label"
GLOBAL = "global"
UNTUNED = "none"
THRESHOLD_TUNING = (PER_LABEL, GLOBAL, UNTUNED)
# The thresholds tried; 0.5 is the one of an untuned model.
THRESHOLD_GRID = tuple(round(0.05 + 0.01 * step, 2) for step in range(91))
# The weights of the deep part's scores in their sum with the wide branch's that validation chooses from.
DEEP_WEIGHT_GRID = tuple(step / 10 for step in range(11))


def clear_calibration(config) -> None:
    """Leaves `config` uncalibrated (temperature and deep part's weight 1.0, no thresholds, no digest of calibrated
    weights): what a model about to be trained further holds until its calibration is fitted again (saving then
    records its weights)."""
    config.calibration_temperature = 1.0
    config.deep_weight = 1.0
    config.label_thresholds = None
    config.calibrated_weights_sha256 = None


def fit_temperature(logits, labels, max_iterations: int = 200) -> float:
    """The temperature `T` > 0 that minimises the negative log-likelihood of `softmax(logits / T)` on `labels`
    (class ids), or, given multi-hot `labels` (one 0/1 row per paper), of every label's `sigmoid(logits / T)`.
    A weak prior on `log T` (a standard normal, weighing as much as one paper) keeps the fit finite where the
    papers carry no evidence: on papers the model gets all right the likelihood alone is best at `T` -> 0 (every
    score 1.0), on papers it gets all wrong at `T` -> infinity; on a validation split of thousands of papers it
    moves `T` by about a thousandth. `T` also stays within what a config accepts (`MIN_TEMPERATURE` to
    `MAX_TEMPERATURE`)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels))
    multi_label = labels.ndim == 2
    labels = labels.to(torch.float64 if multi_label else torch.long)
    loss_of = nn.functional.binary_cross_entropy_with_logits if multi_label else nn.functional.cross_entropy
    if not torch.isfinite(logits).all():
        raise ValueError("fitting a temperature needs finite scores: the model gave NaN or infinite ones")
    if len(labels) == 0:
        raise ValueError("fitting a temperature needs at least one labelled paper")
    # Optimising log T keeps T positive; the NLL is convex in 1/T, so L-BFGS finds the one minimum.
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.5, max_iter=max_iterations, line_search_fn="strong_wolfe")

    def negative_log_likelihood():
        optimizer.zero_grad()
        loss = loss_of(logits / log_temperature.exp(), labels) + log_temperature**2 / (2 * len(labels))
        loss.backward()
        return loss

    optimizer.step(negative_log_likelihood)
    return min(max(float(log_temperature.detach().exp()), MIN_TEMPERATURE), MAX_TEMPERATURE)


def negative_log_likelihood(logits, labels) -> float:
    """The mean negative log-likelihood of class ids (softmax), or of multi-hot `labels` (each label's sigmoid)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels))
    if labels.ndim == 2:
        return float(nn.functional.binary_cross_entropy_with_logits(logits, labels.to(torch.float64)))
    return float(nn.functional.cross_entropy(logits, labels.long()))


def choose_deep_weight(deep, wide, labels, fit_temperatures: bool = True) -> tuple[float, dict]:
    """The weight of the deep part's scores `deep` in their sum with the wide branch's `wide` (both raw, on held-out
    papers with `labels`) that the held-out papers score best, of `DEEP_WEIGHT_GRID`; of weights that score alike,
    the largest is kept. Returns the weight and each weight's score.

    With class ids, the score is the negative log-likelihood (lowest wins), each weight at its own fitted temperature
    (`fit_temperatures`) or at none. With multi-hot labels it is what the model's decisions are judged by: the mean
    of micro- and macro-F1 at one threshold tuned for each weight (highest wins). A log-likelihood there weighs the
    many easy negatives and trades away the rare labels the deep part finds.
    """
    deep, wide = np.asarray(deep, dtype=np.float64), np.asarray(wide, dtype=np.float64)
    if np.asarray(labels).ndim == 2:
        scores = {weight: decision_f1(weight * deep + wide, labels) for weight in DEEP_WEIGHT_GRID}
        best = max(scores.values())
        chosen = max(weight for weight, score in scores.items() if score >= best - 1e-9)
    else:
        scores = {}
        for weight in DEEP_WEIGHT_GRID:
            combined = weight * deep + wide
            temperature = fit_temperature(combined, labels) if fit_temperatures else 1.0
            scores[weight] = negative_log_likelihood(combined / temperature, labels)
        best = min(scores.values())
        chosen = max(weight for weight, score in scores.items() if score <= best + 1e-9)
    return chosen, {f"{weight:g}": round(score, 6) for weight, score in scores.items()}


def decision_f1(logits, labels) -> float:
    """The mean of micro- and macro-F1 of a multi-label model's decisions on held-out papers, at the one threshold
    that `tune_thresholds` gives for them."""
    labels = np.asarray(labels).astype(bool)
    scores = probabilities(logits, multi_label=True)
    decided = decide_labels(scores, tune_thresholds(scores, labels, per_label=False)).numpy()
    macro = np.mean([_f1(decided[:, j], labels[:, j]) for j in range(labels.shape[1])])
    return (_f1(decided, labels) + float(macro)) / 2


def probabilities(logits, multi_label: bool = False) -> np.ndarray:
    """Softmax of each row of `logits` (the sigmoid of each score, `multi_label`), in float64."""
    scores = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    return (scores.sigmoid() if multi_label else scores.softmax(dim=-1)).numpy()


def tune_thresholds(probabilities, labels, per_label: bool) -> list[float]:
    """Decision thresholds of a multi-label model, from the probabilities and multi-hot `labels` of held-out papers:
    one per label, each maximising that label's F1 (`per_label`), or one for every label, maximising the micro-F1
    of the decisions (with the pipelines' rule, `decide_labels`: a paper with no label above it gets its most
    probable one). Of thresholds that score alike, the one nearest 0.5 is kept."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels).astype(bool)
    candidates = sorted(THRESHOLD_GRID, key=lambda threshold: abs(threshold - 0.5))
    if per_label:
        return [
            max(candidates, key=lambda t: _f1(probabilities[:, j] >= t, labels[:, j])) for j in range(labels.shape[1])
        ]
    best = max(candidates, key=lambda t: _f1(decide_labels(probabilities, [t] * labels.shape[1]).numpy(), labels))
    return [best] * labels.shape[1]


def _f1(decided, truth) -> float:
    true_positives = np.logical_and(decided, truth).sum()
    denominator = decided.sum() + truth.sum()
    return float(2 * true_positives / denominator) if denominator else 0.0


def coverage_table(logits, labels, thresholds=COVERAGE_THRESHOLDS) -> list[dict]:
    """For each threshold: the share of papers whose top probability reaches it (those a user would label
    automatically) and the accuracy on them; the others would go to a person."""
    top = probabilities(logits).max(axis=1)
    correct = np.asarray(logits).argmax(axis=1) == np.asarray(labels)
    rows = []
    for threshold in thresholds:
        kept = top >= threshold
        rows.append(
            {
                "threshold": float(threshold),
                "labelled_share": float(kept.mean()) if len(kept) else 0.0,
                "accuracy": float(correct[kept].mean()) if kept.any() else None,
            }
        )
    return rows
