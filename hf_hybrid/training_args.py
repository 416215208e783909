"""Command-line arguments of training and fine-tuning, as `HfArgumentParser` dataclasses.

`TrainingArguments` is reused whole, so every one of its flags works (`--output_dir`, `--seed`,
`--report_to`, `--push_to_hub`, ...); `HybridTrainingArguments` changes its defaults to hf-hybrid's
recipe, and `--recipe notebook` swaps in the research notebook's (see `RECIPES`).
"""

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from .calibration import CALIBRATION_METHODS, PER_LABEL, TEMPERATURE, THRESHOLD_TUNING
from .errors import UserError
from .model import HybridCNNLSTMConfig
from .model.configuration_hybrid_cnn_lstm import MULTI_LABEL, SINGLE_LABEL
from .model.tokenization_hybrid_cnn_lstm import MIN_FREQUENCY

# Every hyperparameter of the model, in the config's order: the config class declares them (and their defaults).
MODEL_HYPERPARAMETERS = tuple(HybridCNNLSTMConfig.__annotations__)

# Where the default recipe trains another model than the config's default (the notebook's): it adds the wide
# branch, which lifted test accuracy by 1.5 points in two seeds (README, Accuracy). `--recipe notebook` sets the
# config's default back.
DEFAULT_RECIPE_MODEL = {"wide_branch": True}
DEFAULT_RECIPE = "default"
NOTEBOOK_RECIPE = "notebook"
# What `--final_fit` trains the saved model on, after the held-out run: nothing more, every labelled paper, or the
# training and validation papers (the test split stays out, so the final model can be measured).
NO_FINAL_FIT = "none"
FINAL_FIT_ALL = "all"
FINAL_FIT_TRAIN_VALIDATION = "train_validation"
FINAL_FIT_MODES = (NO_FINAL_FIT, FINAL_FIT_ALL, FINAL_FIT_TRAIN_VALIDATION)
# What `--recipe notebook` changes: the research notebook's Adam with L2 weight decay on every parameter,
# learning rate halved after 3 epochs without a better validation accuracy, up to 20 epochs with early
# stopping after 5, a random N(0, 1) embedding, and no wide branch. Flags given explicitly still win.
RECIPES = {
    DEFAULT_RECIPE: {},
    NOTEBOOK_RECIPE: {
        "init_embeddings": "random",
        **{name: getattr(HybridCNNLSTMConfig, name) for name in DEFAULT_RECIPE_MODEL},
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "lr_scheduler_type": "reduce_lr_on_plateau",
        "lr_scheduler_kwargs": {"mode": "max", "factor": 0.5, "patience": 3},
        "warmup_steps": 0,
        "num_train_epochs": 20.0,
        "early_stopping_patience": 5,
    },
}

# What each numeric option can mean, as (test, what the error says it must be). Every option of this module
# with a range is listed in the `RANGES` of its dataclass and checked when the arguments are parsed, before
# any file is read or written; an option given as None (where allowed) is not checked.
POSITIVE = (lambda value: value > 0, "greater than 0")
NOT_NEGATIVE = (lambda value: value >= 0, "0 or more")
AT_LEAST_ONE = (lambda value: value >= 1, "1 or more")
# BatchNorm normalises by the spread of a training batch; a batch of one paper has none (and PyTorch refuses it).
AT_LEAST_TWO_PAPERS = (lambda value: value >= 2, "2 or more (BatchNorm trains on the spread of a batch of papers)")
PROBABILITY = (lambda value: 0 <= value < 1, "at least 0 and below 1")
PROBABILITY_OR_ONE = (lambda value: 0 <= value <= 1, "from 0 to 1")
FRACTION = (lambda value: 0 < value < 1, "between 0 and 1 (exclusive)")
ALL_POSITIVE = (lambda values: all(value > 0 for value in values), "a list of numbers greater than 0")
SEED = (lambda value: 0 <= value < 2**32, "0 or more and below 2**32")


def check_ranges(arguments, ranges: dict) -> None:
    """Raises `UserError` naming the first flag of `ranges` ({name: (test, meaning)}) whose value fails its test."""
    for name, (test, meaning) in ranges.items():
        value = getattr(arguments, name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) or not test(value):
            raise UserError(f"--{name} must be {meaning}, got {value!r}")


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
            raise UserError(
                f"--class_weights {item!r}: expected 'balanced', 'none', or LABEL=WEIGHT with a weight of 0 or more"
            )


# Hyperparameters of the config that are not flags: the tokenizer's padding id, the class weights, which the
# `--class_weights` flag of `ModelArguments` gives by label name, and the calibration temperature and the
# multi-label thresholds, which training fits (`--calibration`, `--threshold_tuning`).
NOT_FLAGS = ("pad_token_id", "class_weights", "calibration_temperature", "label_thresholds")


def _config_fields() -> list[tuple[str, type, dataclasses.Field]]:
    """One `make_dataclass` field per hyperparameter of `HybridCNNLSTMConfig` (but `NOT_FLAGS`), with the config's
    default and the line of its docstring as help."""
    helps = documented_arguments(HybridCNNLSTMConfig.__doc__)
    fields = []
    for name in MODEL_HYPERPARAMETERS:
        if name in NOT_FLAGS:
            continue
        default = DEFAULT_RECIPE_MODEL.get(name, getattr(HybridCNNLSTMConfig, name))
        annotation = HybridCNNLSTMConfig.__annotations__[name]
        # A sequence the config takes as a list or a tuple is a list of values on the command line.
        annotation = next((arg for arg in typing.get_args(annotation) if typing.get_origin(arg) is list), annotation)
        value = (
            dataclasses.field(default_factory=lambda default=default: list(default))
            if isinstance(default, (list, tuple))
            else dataclasses.field(default=default)
        )
        value.metadata = {"help": helps[name][0].upper() + helps[name][1:]}
        if name in DEFAULT_RECIPE_MODEL:
            notebook = getattr(HybridCNNLSTMConfig, name)
            value.metadata["help"] += f" The default recipe's: {default}; --recipe notebook's: {notebook}."
        fields.append((name, annotation, value))
    return fields


def documented_arguments(docstring: str) -> dict[str, str]:
    """{name: help} from the `Args:` section of a docstring (`name: text`, or `a / b: text` for both)."""
    helps, names = {}, []
    section = docstring.split("Args:\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        entry = re.match(r"\s{8}(\w+(?: / \w+)*): (.*)", line)
        if entry:
            names = entry[1].split(" / ")
            helps.update(dict.fromkeys(names, entry[2]))
        else:
            helps.update({name: f"{helps[name]} {line.strip()}" for name in names})
    return helps


# The config's hyperparameters as dataclass fields: `ModelArguments` inherits them, flags and defaults included.
ConfigArguments = dataclasses.make_dataclass("ConfigArguments", _config_fields())


@dataclass
class ModelArguments(ConfigArguments):
    """The architecture and the vocabulary of a new model (ignored when fine-tuning, which keeps both): every
    hyperparameter of `HybridCNNLSTMConfig` as a flag with the config's default, plus how the vocabulary, the
    embedding and the class weights are made from the training split (`--vocab_size` is the largest vocabulary
    kept; the model's is the one learned)."""

    min_frequency: int = field(
        default=MIN_FREQUENCY, metadata={"help": "Words seen fewer times in training become <UNK>."}
    )
    init_embeddings: str = field(
        default="word2vec",
        metadata={
            "help": "How the embedding starts: 'word2vec' (skip-gram vectors learned from the training split's "
            "titles and abstracts), 'random' (N(0, 1), as the notebook), or the path of a word2vec/GloVe text file."
        },
    )
    class_weights: list[str] = field(
        default_factory=lambda: ["balanced"],
        metadata={
            "help": "'balanced' (inverse class frequency of the training split; for multi-label, each label's "
            "positive papers weighted by its negatives over its positives), 'none', or weights by label name, "
            "e.g. cs.AI=2.0 (unnamed labels get 1.0)."
        },
    )
    problem_type: str = field(
        default=SINGLE_LABEL,
        metadata={
            "help": f"'{SINGLE_LABEL}' (one label per paper) or '{MULTI_LABEL}' (every label a paper is listed in: "
            "the label column holds space-separated names, e.g. 'cs.CV cs.LG', or a list).",
            "choices": [SINGLE_LABEL, MULTI_LABEL],
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
        "label_smoothing": PROBABILITY,
        "wide_bigram_buckets": POSITIVE,
    }

    def __post_init__(self):
        check_ranges(self, self.RANGES)
        check_class_weights(self.class_weights)

    def config_values(self) -> dict:
        """The hyperparameters of the config given by these arguments (but `vocab_size`: the model's is the
        size of the vocabulary learned)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ConfigArguments) if f.name != "vocab_size"}
        return {**values, "problem_type": self.problem_type}


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
    split_seed: int | None = field(
        default=None, metadata={"help": "Seed of the split (default: --seed); fix it to compare training seeds."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training papers."})

    RANGES = {
        "validation_size": FRACTION,
        "test_size": FRACTION,
        "max_train_samples": AT_LEAST_TWO_PAPERS,
        "split_seed": SEED,
    }

    def __post_init__(self):
        check_ranges(self, self.RANGES)
        held_out = (self.validation_file is None) * self.validation_size + (self.test_file is None) * self.test_size
        if held_out >= 1:
            raise UserError(
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
    """`TrainingArguments` with hf-hybrid's recipe as defaults.

    Batch 64, AdamW (decoupled weight decay, none on the embedding, biases and norms), a linear warm-up then
    linear decay of the learning rate, gradient clipping 1.0, early stopping, and the best epoch's weights
    restored at the end. `recipe="notebook"` trains with the notebook's Adam and L2 decay on every parameter
    instead; `parse_training_arguments` also swaps in the notebook's other settings (`RECIPES`).
    """

    output_dir: str | None = field(default=None, metadata={"help": "Where the trained model and reports go."})
    recipe: str = field(
        default=DEFAULT_RECIPE,
        metadata={
            "help": "'default' (AdamW, warm-up and linear decay, word2vec embedding) or 'notebook' (the research "
            "notebook's Adam with L2 decay, plateau halving, random embedding, 20 epochs); flags given still win.",
            "choices": list(RECIPES),
        },
    )
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    num_train_epochs: float = 2.0
    optim: str = "adamw_torch_fused"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=dict,
        metadata={"help": "Options of the scheduler (the notebook recipe's plateau one maximises accuracy: mode max)."},
    )
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."})
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    logging_strategy: str = "epoch"
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"
    greater_is_better: bool | None = True
    early_stopping_patience: int = field(default=2, metadata={"help": "Epochs without improvement before stopping."})
    freeze_embedding_epochs: float = field(
        default=0,
        metadata={"help": "Epochs during which the word embedding keeps the vectors it started from (0: none)."},
    )
    wide_learning_rate: float = field(
        default=0.03,
        metadata={
            "help": "Peak learning rate of the wide branch, on the same schedule. Its weights start at zero and "
            "most of its features are rare: alone, it scored best at 0.01-0.03 (0.001: 3 points less)."
        },
    )
    calibration: str = field(
        default=TEMPERATURE,
        metadata={
            "help": "'temperature': after training, fit the temperature that calibrates the probabilities on "
            "the validation split and store it in the config; 'none': leave the scores as trained.",
            "choices": list(CALIBRATION_METHODS),
        },
    )
    threshold_tuning: str = field(
        default=PER_LABEL,
        metadata={
            "help": "Multi-label models: after calibration, set the decision thresholds on the validation "
            "split, one 'per_label' (each maximising the label's F1), one 'global' for every label (maximising "
            "micro-F1), or 'none' (0.5); they are stored in the config.",
            "choices": list(THRESHOLD_TUNING),
        },
    )
    final_fit: str = field(
        default=NO_FINAL_FIT,
        metadata={
            "help": "After the held-out run has been measured and calibrated, train the model that is saved "
            "again, from scratch with the same recipe and best epoch count, on 'all' labelled papers, or on "
            "'train_validation' (the test split stays out, to measure the final model); 'none': save the "
            "held-out run's model. The card's metrics stay those of the held-out run.",
            "choices": list(FINAL_FIT_MODES),
        },
    )
    report_to: None | str | list[str] = "none"
    # Pinned memory only speeds up copies to a GPU; without one, PyTorch warns on every data loader.
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "Pin the data loaders' memory (default: with CUDA)."}
    )

    RANGES = {
        "per_device_train_batch_size": AT_LEAST_TWO_PAPERS,
        "per_device_eval_batch_size": AT_LEAST_ONE,
        "gradient_accumulation_steps": AT_LEAST_ONE,
        "learning_rate": POSITIVE,
        "weight_decay": NOT_NEGATIVE,
        "max_grad_norm": NOT_NEGATIVE,
        "label_smoothing_factor": PROBABILITY,
        "early_stopping_patience": AT_LEAST_ONE,
        "save_total_limit": AT_LEAST_ONE,
        "seed": SEED,
        "data_seed": SEED,
        "dataloader_num_workers": NOT_NEGATIVE,
        "logging_steps": POSITIVE,
        "eval_steps": POSITIVE,
        "save_steps": POSITIVE,
        "warmup_steps": NOT_NEGATIVE,
        "freeze_embedding_epochs": NOT_NEGATIVE,
        "wide_learning_rate": POSITIVE,
    }

    def __post_init__(self):
        super().__post_init__()
        check_ranges(self, self.RANGES)
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(
                f"--max_steps must be greater than 0 (or -1: train --num_train_epochs), got {self.max_steps}"
            )
        if self.max_steps == -1 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise UserError(f"--num_train_epochs must be greater than 0, got {self.num_train_epochs}")
        if self.lr_scheduler_type == "reduce_lr_on_plateau":
            self._check_plateau_kwargs()

    def _check_plateau_kwargs(self):
        # Kwargs given on the command line replace the default dict whole: without "mode" the scheduler
        # would minimise the validation accuracy.
        kwargs = dict(self.lr_scheduler_kwargs or {})
        kwargs.setdefault("mode", "max" if self.greater_is_better is not False else "min")
        factor, patience = kwargs.get("factor", 0.1), kwargs.get("patience", 10)
        if not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise UserError(f"--lr_scheduler_kwargs: the plateau factor must be between 0 and 1, got {factor!r}")
        if not isinstance(patience, int) or patience < 0:
            raise UserError(f"--lr_scheduler_kwargs: the plateau patience must be 0 or more epochs, got {patience!r}")
        self.lr_scheduler_kwargs = kwargs


def parse_training_arguments(dataclass_types, argv: list[str], prog: str) -> tuple:
    """Parses `argv` into `dataclass_types` (an `HfArgumentParser`), with the defaults of the `--recipe` it names."""
    parser = HfArgumentParser(dataclass_types, prog=prog)
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**{name: value for name, value in RECIPES[known.recipe].items() if hasattr(known, name)})
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except UserError:
        raise
    except ValueError as error:  # `TrainingArguments`' own checks of what the flags ask for
        raise UserError(str(error)) from error
