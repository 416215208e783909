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
>>> overconfident = np.array([[6.0, 0.0], [0.0, 6.0], [6.0, 0.0], [0.0, 6.0]])  # each 0.998 sure
>>> temperature = fit_temperature(overconfident, np.array([0, 1, 0, 0]))  # but 3 of 4 right
>>> round(temperature, 2), round(float(1 / (1 + np.exp(-6.0 / temperature))), 2)
(5.46, 0.75)
```
"""

import numpy as np
import torch

TEMPERATURE = "temperature"
NO_CALIBRATION = "none"
CALIBRATION_METHODS = (TEMPERATURE, NO_CALIBRATION)
# The top-probability thresholds of the model card's coverage table.
COVERAGE_THRESHOLDS = (0.5, 0.7, 0.9)


def fit_temperature(logits, labels, max_iterations: int = 200) -> float:
    """The temperature `T` > 0 that minimises the negative log-likelihood of `softmax(logits / T)` on `labels`."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(labels) == 0:
        raise ValueError("fitting a temperature needs at least one labelled paper")
    # Optimising log T keeps T positive; the NLL is convex in 1/T, so L-BFGS finds the one minimum.
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.5, max_iter=max_iterations, line_search_fn="strong_wolfe")

    def negative_log_likelihood():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(negative_log_likelihood)
    return float(log_temperature.detach().exp())


def probabilities(logits) -> np.ndarray:
    """Softmax of each row of `logits`, in float64."""
    return torch.as_tensor(np.asarray(logits), dtype=torch.float64).softmax(dim=-1).numpy()


def coverage_table(logits, labels, thresholds=COVERAGE_THRESHOLDS) -> list[dict]:
    """For each threshold: the share of papers whose top probability reaches it (those a user would label
    automatically) and the accuracy on them; the others would go to a person."""
    top = probabilities(logits).max(axis=1)
    correct = np.asarray(logits).argmax(axis=1) == np.asarray(labels)
    rows = []
    for threshold in thresholds:
        kept = top >= threshold
        rows.append({
            "threshold": float(threshold),
            "labelled_share": float(kept.mean()) if len(kept) else 0.0,
            "accuracy": float(correct[kept].mean()) if kept.any() else None,
        })
    return rows
