"""`--class_weights`: parsed once into a rule, which the training split then turns into one weight per label.

A rule is `BALANCED`, `NO_WEIGHTS`, or {label name: weight}.
"""

import math

import numpy as np

from .errors import UserError

BALANCED = "balanced"
NO_WEIGHTS = "none"
ClassWeightRule = str | dict[str, float]


def default_rule(multi_label: bool) -> ClassWeightRule:
    """The rule when `--class_weights` is not given: `BALANCED` for single-label data, `NO_WEIGHTS` for multi-label
    data, where balanced positive weights cost 1.3 points of micro-F1 and the calibration (docs/multi_label.md)."""
    return NO_WEIGHTS if multi_label else BALANCED


def parse_class_weights(spec: list[str] | ClassWeightRule) -> ClassWeightRule:
    """The rule `--class_weights` gives: `balanced` or `none` alone (nothing: `none`), or LABEL=WEIGHT pairs with
    weights of 0 or more (whether the labels exist is the data's to say). A rule already parsed is returned as is.

    ```python
    >>> parse_class_weights(["cs.AI=2", "cs.CL=0.5"])
    {'cs.AI': 2.0, 'cs.CL': 0.5}
    >>> parse_class_weights(["balanced"])
    'balanced'
    ```
    """
    if isinstance(spec, dict) or spec in (BALANCED, NO_WEIGHTS):
        return spec
    if list(spec) in ([BALANCED], [NO_WEIGHTS], []):
        return spec[0] if spec else NO_WEIGHTS
    weights = {}
    for item in spec:
        name, separator, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not separator or not name or not math.isfinite(weight) or weight < 0:
            raise UserError(
                f"--class_weights {item!r}: expected 'balanced', 'none', or LABEL=WEIGHT with a weight of 0 or more"
            )
        weights[name] = weight
    return weights


def resolve_class_weights(rule: ClassWeightRule, label_names: list[str], train_labels) -> list[float] | None:
    """One weight per label of `label_names` (None: no weights) from a parsed `rule`.

    `BALANCED`: inverse class frequency in the training split (n / (classes * count)), or, for multi-label
    `train_labels` (each paper's list of label ids), each label's positive weight: its negative papers over its
    positive ones; `NO_WEIGHTS`: none; {label: weight}: those weights by label name, the other labels 1.0.
    """
    if rule == NO_WEIGHTS:
        return None
    if rule == BALANCED:
        train_labels = list(train_labels)
        if train_labels and isinstance(train_labels[0], list):
            positives = np.bincount([i for ids in train_labels for i in ids], minlength=len(label_names))
            weights = np.where(positives > 0, (len(train_labels) - positives) / np.maximum(positives, 1), 1.0)
        else:
            counts = np.bincount(np.asarray(train_labels), minlength=len(label_names))
            present = counts > 0
            weights = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
        return [round(float(weight), 6) for weight in weights]
    unknown = [name for name in rule if name not in label_names]
    if unknown:
        raise UserError(
            f"--class_weights {', '.join(unknown)}: no such label: expected LABEL=WEIGHT with LABEL one of "
            f"{label_names}"
        )
    return [rule.get(name, 1.0) for name in label_names]
