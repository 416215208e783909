"""What each numeric option can mean, and the check that refuses a value outside it.

A range is a pair (test, what the error says the value must be). Every option with a range is listed in the
`RANGES` of its dataclass (or of its command) and checked when the arguments are parsed, before any file is
read or written; an option given as None (where allowed) is not checked.
"""

import math

from .errors import UserError
from .model.configuration_hybrid_cnn_lstm import MIN_VOCAB_SIZE, python_number

POSITIVE = (lambda value: value > 0, "greater than 0")
NOT_NEGATIVE = (lambda value: value >= 0, "0 or more")
AT_LEAST_ONE = (lambda value: value >= 1, "1 or more")
# BatchNorm normalises by the spread of a training batch; a batch of one paper has none (and PyTorch refuses it).
AT_LEAST_TWO_PAPERS = (lambda value: value >= 2, "2 or more (BatchNorm trains on the spread of a batch of papers)")
VOCABULARY_SIZE = (lambda value: value >= MIN_VOCAB_SIZE, f"at least {MIN_VOCAB_SIZE} (<PAD>, <UNK> and one word)")
NO_FOLDS_OR_TWO_OR_MORE = (lambda value: value == 0 or value >= 2, "0 (none) or 2 or more")
PROBABILITY = (lambda value: 0 <= value < 1, "at least 0 and below 1")
PROBABILITY_OR_ONE = (lambda value: 0 <= value <= 1, "from 0 to 1")
FRACTION = (lambda value: 0 < value < 1, "between 0 and 1 (exclusive)")
ALL_POSITIVE = (lambda values: all(value > 0 for value in values), "a list of numbers greater than 0")
SOME_POSITIVE = (lambda values: bool(values) and ALL_POSITIVE[0](values), "one or more widths greater than 0")
SEED = (lambda value: 0 <= value < 2**32, "0 or more and below 2**32")


def check_ranges(arguments, ranges: dict) -> None:
    """Raises `UserError` naming the first flag of `ranges` ({name: (test, meaning)}) whose value fails its test;
    every value given as a NumPy or PyTorch scalar becomes the Python number it holds first."""
    # Arguments built in Python may hold NumPy or PyTorch scalars, which `json` cannot write (training_args.json).
    for name, given in list(vars(arguments).items()):
        if (value := python_number(given)) is not given:
            setattr(arguments, name, value)
    for name, (test, meaning) in ranges.items():
        value = getattr(arguments, name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise UserError(f"--{name} must be {meaning}, got {value!r}")
