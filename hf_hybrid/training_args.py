"""Command-line arguments of training and fine-tuning, as `HfArgumentParser` dataclasses.

`TrainingArguments` is reused whole, so every one of its flags works (`--output_dir`, `--seed`,
`--report_to`, `--push_to_hub`, ...); `HybridTrainingArguments` only changes its defaults to the
research notebook's recipe.
"""

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

# What each numeric option can mean, as (test, what the error says it must be). Every option of this module
# with a range is listed in the `RANGES` of its dataclass and checked when the arguments are parsed, before
# any file is read or written; an option given as None (where allowed) is not checked.
POSITIVE = (lambda value: value > 0, "greater than 0")
NOT_NEGATIVE = (lambda value: value >= 0, "0 or more")
AT_LEAST_ONE = (lambda value: value >= 1, "1 or more")
PROBABILITY = (lambda value: 0 <= value < 1, "at least 0 and below 1")
FRACTION = (lambda value: 0 < value < 1, "between 0 and 1 (exclusive)")
ALL_POSITIVE = (lambda values: all(value > 0 for value in values), "a list of numbers greater than 0")


def check_ranges(arguments, ranges: dict) -> None:
    """Raises `ValueError` naming the first flag of `ranges` ({name: (test, meaning)}) whose value fails its test."""
    for name, (test, meaning) in ranges.items():
        value = getattr(arguments, name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise ValueError(f"--{name} must be {meaning}, got {value!r}")


def check_class_weights(spec: list[str]) -> None:
    """The syntax of `--class_weights`: `balanced` or `none` alone, or LABEL=WEIGHT pairs with weights of 0 or
    more (the labels themselves are checked against the data)."""
    if spec in (["balanced"], ["none"], []):
        return
    for item in spec:
        name, separator, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not separator or not name or not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"--class_weights {item!r}: expected 'balanced', 'none', or LABEL=WEIGHT with a weight of 0 or more"
            )


@dataclass
class ModelArguments:
    """The architecture and the vocabulary of a new model (ignored when fine-tuning, which keeps both)."""

    vocab_size: int = field(default=50000, metadata={"help": "Most frequent training words kept, <PAD>/<UNK> included."})
    min_frequency: int = field(default=2, metadata={"help": "Words seen fewer times in training become <UNK>."})
    embed_dim: int = field(default=300, metadata={"help": "Size of the word embedding shared by both branches."})
    num_filters: int = field(default=256, metadata={"help": "Channels of each abstract convolution."})
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5], metadata={"help": "Convolution widths."})
    lstm_hidden: int = field(default=256, metadata={"help": "Hidden size of each direction of the title BiLSTM."})
    lstm_layers: int = field(default=2, metadata={"help": "Stacked BiLSTM layers."})
    dropout: float = field(default=0.5, metadata={"help": "Dropout between LSTM layers and in the head."})
    embedding_dropout: float = field(default=0.25, metadata={"help": "Dropout on word embeddings."})
    output_dropout: float = field(default=0.4, metadata={"help": "Dropout before the output layer."})
    classifier_hidden_sizes: list[int] = field(default_factory=lambda: [512, 256], metadata={"help": "Head widths."})
    max_title_length: int = field(default=30, metadata={"help": "Title words kept."})
    max_abstract_length: int = field(default=200, metadata={"help": "Abstract words kept."})
    class_weights: list[str] = field(
        default_factory=lambda: ["balanced"],
        metadata={
            "help": "'balanced' (inverse class frequency of the training split), 'none', or weights by label name, "
            "e.g. cs.AI=2.0 (unnamed labels get 1.0)."
        },
    )

    RANGES = {
        "vocab_size": (lambda value: value >= 3, "at least 3 (<PAD>, <UNK> and one word)"),
        "min_frequency": AT_LEAST_ONE,
        "embed_dim": POSITIVE,
        "num_filters": POSITIVE,
        "kernel_sizes": (lambda values: bool(values) and ALL_POSITIVE[0](values), "one or more widths greater than 0"),
        "lstm_hidden": POSITIVE,
        "lstm_layers": POSITIVE,
        "dropout": PROBABILITY,
        "embedding_dropout": PROBABILITY,
        "output_dropout": PROBABILITY,
        "classifier_hidden_sizes": ALL_POSITIVE,
        "max_title_length": POSITIVE,
        "max_abstract_length": POSITIVE,
    }

    def __post_init__(self):
        check_ranges(self, self.RANGES)
        check_class_weights(self.class_weights)


@dataclass
class DataArguments:
    """Where the papers come from, which columns hold what, and how they are split."""

    train_file: str | None = field(default=None, metadata={"help": "CSV, JSON/JSONL or Parquet file of papers."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation papers (else split off)."})
    test_file: str | None = field(default=None, metadata={"help": "Test papers (else split off)."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id, instead of --train_file."})
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_split: str = field(default="train", metadata={"help": "The Hub dataset's split to use."})
    title_column: str = field(default="title")
    abstract_column: str = field(default="abstract")
    label_column: str = field(default="category")
    labels: list[str] = field(default_factory=list, metadata={"help": "Keep only papers of these classes."})
    validation_size: float = field(default=0.15, metadata={"help": "Fraction split off for validation."})
    test_size: float = field(default=0.15, metadata={"help": "Fraction split off for the test."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training papers."})

    RANGES = {"validation_size": FRACTION, "test_size": FRACTION, "max_train_samples": AT_LEAST_ONE}

    def __post_init__(self):
        check_ranges(self, self.RANGES)
        held_out = (self.validation_file is None) * self.validation_size + (self.test_file is None) * self.test_size
        if held_out >= 1:
            raise ValueError(
                f"--validation_size {self.validation_size} and --test_size {self.test_size} leave no training papers"
            )


@dataclass
class FinetuneArguments:
    """The model that fine-tuning starts from."""

    model: str = field(metadata={"help": "A folder or Hub repo id of a trained hf-hybrid model."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of the Hub repo."})
    class_weights: list[str] = field(
        default_factory=lambda: ["balanced"],
        metadata={"help": "As for training: 'balanced', 'none', or label=weight pairs."},
    )

    def __post_init__(self):
        check_class_weights(self.class_weights)


@dataclass
class HybridTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the notebook's recipe as defaults.

    Batch 64, 20 epochs, Adam (lr 1e-3, L2 weight decay 1e-4), gradient clipping 1.0, learning rate
    halved after 3 epochs without a better validation accuracy, early stopping after 5, and the best
    epoch's weights restored at the end.
    """

    output_dir: str | None = field(default=None, metadata={"help": "Where the trained model and reports go."})
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    num_train_epochs: float = 20.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "reduce_lr_on_plateau"
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: {"mode": "max", "factor": 0.5, "patience": 3},
        metadata={"help": "The plateau scheduler must maximise accuracy: it does not read greater_is_better."},
    )
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    logging_strategy: str = "epoch"
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"
    greater_is_better: bool | None = True
    early_stopping_patience: int = field(default=5, metadata={"help": "Epochs without improvement before stopping."})
    report_to: None | str | list[str] = "none"

    RANGES = {
        "per_device_train_batch_size": AT_LEAST_ONE,
        "per_device_eval_batch_size": AT_LEAST_ONE,
        "gradient_accumulation_steps": AT_LEAST_ONE,
        "learning_rate": POSITIVE,
        "weight_decay": NOT_NEGATIVE,
        "max_grad_norm": NOT_NEGATIVE,
        "label_smoothing_factor": PROBABILITY,
        "early_stopping_patience": AT_LEAST_ONE,
        "save_total_limit": AT_LEAST_ONE,
        "seed": (lambda value: 0 <= value < 2**32, "0 or more and below 2**32"),
        "data_seed": (lambda value: 0 <= value < 2**32, "0 or more and below 2**32"),
        "dataloader_num_workers": NOT_NEGATIVE,
        "logging_steps": POSITIVE,
        "eval_steps": POSITIVE,
        "save_steps": POSITIVE,
    }

    def __post_init__(self):
        super().__post_init__()
        check_ranges(self, self.RANGES)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max_steps must be greater than 0 (or -1: train --num_train_epochs), got {self.max_steps}")
        if self.max_steps == -1 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(f"--num_train_epochs must be greater than 0, got {self.num_train_epochs}")
        if self.lr_scheduler_type == "reduce_lr_on_plateau":
            self._check_plateau_kwargs()

    def _check_plateau_kwargs(self):
        # Kwargs given on the command line replace the default dict whole: without "mode" the scheduler
        # would minimise the validation accuracy.
        kwargs = dict(self.lr_scheduler_kwargs or {})
        kwargs.setdefault("mode", "max" if self.greater_is_better is not False else "min")
        factor, patience = kwargs.get("factor", 0.1), kwargs.get("patience", 10)
        if not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"--lr_scheduler_kwargs: the plateau factor must be between 0 and 1, got {factor!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"--lr_scheduler_kwargs: the plateau patience must be 0 or more epochs, got {patience!r}")
        self.lr_scheduler_kwargs = kwargs
