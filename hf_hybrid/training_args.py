"""Command-line arguments of training and fine-tuning, as `HfArgumentParser` dataclasses.

`TrainingArguments` is reused whole, so every one of its flags works (`--output_dir`, `--seed`,
`--report_to`, `--push_to_hub`, ...); `HybridTrainingArguments` changes its defaults to hf-hybrid's, and the
options a recipe sets take the `--recipe`'s values unless given (`hf_hybrid.recipes`). `ModelArguments` lists
every hyperparameter of `HybridCNNLSTMConfig` that is a flag, with the config's default.
"""

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from .calibration import CALIBRATION_METHODS, TEMPERATURE, THRESHOLD_TUNING
from .class_weights import default_rule, parse_class_weights
from .distributed import check_launch
from .errors import UserError
from .model import HybridCNNLSTMConfig
from .model.configuration_hybrid_cnn_lstm import MULTI_LABEL, SINGLE_LABEL
from .model.tokenization_hybrid_cnn_lstm import MIN_FREQUENCY
from .ranges import (
    ALL_POSITIVE,
    AT_LEAST_ONE,
    AT_LEAST_TWO_PAPERS,
    FRACTION,
    NO_FOLDS_OR_TWO_OR_MORE,
    NOT_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    SEED,
    SOME_POSITIVE,
    VOCABULARY_SIZE,
    check_ranges,
)
from .recipes import DEFAULT_RECIPE, MULTI_LABEL_CHANGES, RECIPES, fill_from_recipe, recipe_default
from .wide_fit import WIDE_FITS

# Every hyperparameter of the model, in the config's order: the config class declares them (and their defaults).
MODEL_HYPERPARAMETERS = tuple(HybridCNNLSTMConfig.__annotations__)
# Hyperparameters of the config that are not flags: the tokenizer's padding id, the class weights, which
# `--class_weights` gives by label name, and the calibration temperature, the deep part's weight and the
# multi-label thresholds, which training fits (`--calibration`, `--threshold_tuning`), with the digest of the weights
# the calibration was fitted for. Every other one is a field of `ModelArguments`.
NOT_FLAGS = (
    "pad_token_id",
    "class_weights",
    "calibration_temperature",
    "deep_weight",
    "label_thresholds",
    "calibrated_weights_sha256",
)

# What `--final_fit` trains the saved model on, after the held-out run: nothing more, every labelled paper, or the
# training and validation papers (the test split stays out, so the final model can be measured).
# `auto` is `all` for a table of fewer than `SMALL_TABLE_PAPERS` labelled papers, where the held-out splits are a
# large share of what there is to learn from, and `none` otherwise.
NO_FINAL_FIT = "none"
FINAL_FIT_ALL = "all"
FINAL_FIT_TRAIN_VALIDATION = "train_validation"
FINAL_FIT_AUTO = "auto"
FINAL_FIT_MODES = (FINAL_FIT_AUTO, NO_FINAL_FIT, FINAL_FIT_ALL, FINAL_FIT_TRAIN_VALIDATION)
SMALL_TABLE_PAPERS = 10_000


def config_default(name: str, help_text: str):
    """A field of `ModelArguments` for the config's hyperparameter `name`, with the config's default."""
    default = getattr(HybridCNNLSTMConfig, name)
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass
class ModelArguments:
    """The architecture and the vocabulary of a new model (ignored when fine-tuning, which keeps both): every
    hyperparameter of `HybridCNNLSTMConfig` but `NOT_FLAGS`, with the config's default, plus how the vocabulary,
    the embedding and the class weights are made from the training split. `init_embeddings` and `wide_branch`
    left None take the recipe's values (`for_recipe`)."""

    vocab_size: int = config_default(
        "vocab_size",
        "The largest vocabulary kept, <PAD> and <UNK> included (the model's is the one learned from the "
        "training split).",
    )
    embed_dim: int = config_default("embed_dim", "Size of the word embedding shared by both branches.")
    num_filters: int = config_default("num_filters", "Output channels of each abstract convolution.")
    kernel_sizes: list[int] = config_default(
        "kernel_sizes", "One convolution per width, run in parallel over the abstract."
    )
    lstm_hidden: int = config_default("lstm_hidden", "Hidden size of each direction of the title BiLSTM.")
    lstm_layers: int = config_default("lstm_layers", "Stacked BiLSTM layers.")
    dropout: float = config_default("dropout", "Dropout between LSTM layers and before the head's hidden layers.")
    embedding_dropout: float = config_default("embedding_dropout", "Dropout on the word embeddings.")
    output_dropout: float = config_default("output_dropout", "Dropout before the head's output layer.")
    classifier_hidden_sizes: list[int] = config_default(
        "classifier_hidden_sizes", "Widths of the head's hidden layers."
    )
    max_title_length: int = config_default("max_title_length", "Title words kept; the tokenizer truncates to them.")
    max_abstract_length: int = config_default(
        "max_abstract_length", "Abstract words kept; the tokenizer truncates to them."
    )
    label_smoothing: float = config_default(
        "label_smoothing",
        "Share of each label's target spread over all labels in the model's loss (0: none); both branches and "
        "multi-label models use it.",
    )
    wide_branch: bool | None = field(
        **recipe_default(
            "wide_branch",
            "Add a 'wide' linear classifier over the paper's words and hashed word pairs, weighted by their "
            "inverse document frequency in the training split (as TF-IDF). Each branch learns on its own loss; "
            "the model predicts with the product of their probabilities.",
            nargs="?",  # `--wide_branch` alone turns it on, as a flag of type bool does
            const=True,
        ),
    )
    wide_bigram_buckets: int = config_default("wide_bigram_buckets", "Hash buckets of the wide branch's word pairs.")
    wide_sublinear_tf: bool = config_default(
        "wide_sublinear_tf",
        "Weigh each feature of the wide branch by 1 + ln(count) of its count in the paper (as TfidfVectorizer's "
        "sublinear_tf) rather than by the count.",
    )
    min_frequency: int = field(
        default=MIN_FREQUENCY, metadata={"help": "Words seen fewer times in training become <UNK>."}
    )
    init_embeddings: str | None = field(
        **recipe_default(
            "init_embeddings",
            "How the embedding starts: 'word2vec' (skip-gram vectors learned from the training split's titles and "
            "abstracts), 'random' (N(0, 1), as the notebook), or the path of a word2vec/GloVe text file.",
        )
    )
    class_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "'balanced' (inverse class frequency of the training split; for multi-label, each label's "
            "positive papers weighted by its negatives over its positives), 'none', or weights by label name, "
            "e.g. cs.AI=2.0 (unnamed labels get 1.0). Default: 'balanced' for single-label data, 'none' for "
            "multi-label data.",
            "nargs": "+",
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
        "vocab_size": VOCABULARY_SIZE,
        "min_frequency": AT_LEAST_ONE,
        "embed_dim": POSITIVE,
        "num_filters": POSITIVE,
        "kernel_sizes": SOME_POSITIVE,
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
        # A rule: "balanced", "none" or {label: weight}; the labels are checked against the data.
        self.class_weights = (
            default_rule(self.problem_type == MULTI_LABEL)
            if self.class_weights is None
            else parse_class_weights(self.class_weights)
        )

    def for_recipe(self, recipe: str) -> "ModelArguments":
        """These arguments with the options left None set to `recipe`'s values (see `hf_hybrid.recipes`)."""
        arguments = dataclasses.replace(self)
        fill_from_recipe(arguments, recipe)
        return arguments

    def config_values(self) -> dict:
        """The hyperparameters of the config given by these arguments (but `vocab_size`: the model's is the
        size of the vocabulary learned)."""
        if self.wide_branch is None:
            raise ValueError("the recipe's values are not set: use model_args.for_recipe(training_args.recipe)")
        names = [name for name in MODEL_HYPERPARAMETERS if name not in NOT_FLAGS and name != "vocab_size"]
        return {**{name: getattr(self, name) for name in names}, "problem_type": self.problem_type}


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
    class_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "As for training: 'balanced', 'none', or label=weight pairs (default: 'balanced' for a "
            "single-label model, 'none' for a multi-label one).",
            "nargs": "+",
        },
    )

    def __post_init__(self):
        # None: the default rule of the model's problem type, which fine-tuning reads from its config.
        if self.class_weights is not None:
            self.class_weights = parse_class_weights(self.class_weights)


@dataclass
class HybridTrainingArguments(TrainingArguments):
    """`TrainingArguments` with hf-hybrid's defaults, and the options of `hf_hybrid.recipes` at the `recipe`'s
    values unless given.

    Batch 64, gradient clipping 1.0, early stopping, and the best epoch's weights restored at the end; the default
    recipe trains with AdamW (no decay on the embedding, biases and norms), a linear warm-up then linear decay,
    `recipe="notebook"` with the notebook's Adam, L2 decay on every parameter and plateau halving.
    """

    output_dir: str | None = field(default=None, metadata={"help": "Where the trained model and reports go."})
    recipe: str = field(
        default=DEFAULT_RECIPE,
        metadata={
            "help": "'default' (AdamW, warm-up and linear decay, word2vec embedding, wide branch) or 'notebook' (the "
            "research notebook's Adam with L2 decay, plateau halving, random embedding, no wide branch, 20 "
            "epochs); flags given still win.",
            "choices": list(RECIPES),
        },
    )
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    num_train_epochs: float | None = field(
        **recipe_default(
            "num_train_epochs",
            "Epochs to train at most (early stopping may end sooner). Left to the recipe, it is the fewest epochs of "
            "a rule that fits the training to the data: as many epochs as it takes to make --min_train_steps "
            "optimizer steps, but at most --max_train_epochs.",
        )
    )
    min_train_steps: int | None = field(
        **recipe_default(
            "min_train_steps",
            "With --num_train_epochs left to the recipe: train for at least this many optimizer steps (more epochs "
            "on a small training split).",
        )
    )
    max_train_epochs: float | None = field(
        **recipe_default(
            "max_train_epochs", "With --num_train_epochs left to the recipe: the most epochs --min_train_steps adds."
        )
    )
    optim: str = "adamw_torch_fused"
    learning_rate: float | None = field(**recipe_default("learning_rate", "Peak learning rate."))
    weight_decay: float | None = field(**recipe_default("weight_decay", "Weight decay."))
    max_grad_norm: float = 1.0
    lr_scheduler_type: str | None = field(**recipe_default("lr_scheduler_type", "The learning rate's schedule."))
    lr_scheduler_kwargs: dict | str | None = field(
        **recipe_default(
            "lr_scheduler_kwargs",
            "Options of the scheduler, as JSON (the plateau scheduler maximises accuracy: mode max).",
        )
    )
    warmup_steps: float | None = field(
        **recipe_default("warmup_steps", "Warm-up steps, or a fraction of all steps if < 1.")
    )
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    logging_strategy: str = "epoch"
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"
    greater_is_better: bool | None = True
    early_stopping_patience: int | None = field(
        **recipe_default("early_stopping_patience", "Epochs without improvement before stopping.")
    )
    freeze_embedding_epochs: float = field(
        default=0,
        metadata={"help": "Epochs during which the word embedding keeps the vectors it started from (0: none)."},
    )
    wide_learning_rate: float = field(
        default=0.03,
        metadata={
            "help": "Peak learning rate of the wide branch when it trains jointly (--wide_fit joint), on the same "
            "schedule. Its weights start at zero and most of its features are rare: alone, it scored best at "
            "0.01-0.03 (0.001: 3 points less)."
        },
    )
    wide_fit: str | None = field(
        default=None,
        metadata={
            "help": "How the wide branch learns: 'lbfgs' fits it first, alone, as the L2-regularised logistic "
            "regression it is (full-batch L-BFGS on the training split), then keeps it fixed while the rest "
            "trains; 'joint' trains it beside the rest with AdamW at --wide_learning_rate. Default: 'lbfgs' "
            "for a new model and for fine-tuning to new labels, 'joint' for fine-tuning that keeps the labels.",
            "choices": list(WIDE_FITS),
        },
    )
    wide_regularization: float | None = field(
        default=None,
        metadata={
            "help": "--wide_fit lbfgs: the inverse L2 strength C, as in LogisticRegression(C=...). Default: chosen "
            "from 1, 10 and 100 by the out-of-fold logits' loss (--wide_folds) on a training split of up to "
            "10,000 papers, else 10."
        },
    )
    wide_fit_iterations: int = field(default=300, metadata={"help": "--wide_fit lbfgs: the most L-BFGS iterations."})
    wide_folds: int = field(
        default=3,
        metadata={
            "help": "--wide_fit lbfgs: the rest of the model learns to correct the fitted branch, on the sum of "
            "their logits, where each training paper's wide logits come from a fit on the other folds of this "
            "many (the branch itself is still fitted on every paper). 0: each part learns on its own loss."
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
    threshold_tuning: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label models only: after calibration, set the decision thresholds on the validation "
            "split, one 'global' for every label (maximising micro-F1; the default), one 'per_label' (each "
            "maximising the label's F1: more of the rare labels found, more wrong labels given), or 'none' (0.5); "
            "they are stored in the config.",
            "choices": list(THRESHOLD_TUNING),
        },
    )
    final_fit: str = field(
        default=FINAL_FIT_AUTO,
        metadata={
            "help": "After the held-out run has been measured and calibrated, train the model that is saved "
            "again (from scratch; when fine-tuning, from the base model again) with the same recipe and best epoch "
            "count, on 'all' labelled papers, or on 'train_validation' (the test split stays out, to measure the "
            "final model); 'none': save the held-out run's model; 'auto': 'all' for a table of fewer than "
            f"{SMALL_TABLE_PAPERS:,} labelled papers, else 'none'. The card's metrics stay those of the held-out run.",
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
        "early_stopping_patience": AT_LEAST_ONE,
        "min_train_steps": NOT_NEGATIVE,
        "max_train_epochs": POSITIVE,
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
        "wide_regularization": POSITIVE,
        "wide_fit_iterations": AT_LEAST_ONE,
        "wide_folds": NO_FOLDS_OR_TWO_OR_MORE,
    }

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise UserError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.wide_fit not in (None, *WIDE_FITS):
            raise UserError(f"--wide_fit must be one of {', '.join(WIDE_FITS)}, got {self.wide_fit!r}")
        self._options_from_recipe = fill_from_recipe(self, self.recipe)
        if self.label_smoothing_factor:
            # The Trainer's label smoother would replace the model's own loss: no class weights, no wide branch's
            # loss, and a softmax over a multi-label model's independent labels.
            raise UserError(
                "--label_smoothing_factor is not used by hf-hybrid models: give --label_smoothing, which the "
                "model's own loss applies (and the config keeps)"
            )
        check_launch(self)  # before the Trainer's arguments set up the processes
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

    def use_multi_label_values(self) -> None:
        """Sets the options that the recipe filled, and sets otherwise for multi-label models, to those values
        (`hf_hybrid.recipes.MULTI_LABEL_CHANGES`); options given explicitly, or changed since, keep their value."""
        for name, value in MULTI_LABEL_CHANGES[self.recipe].items():
            if name in self._options_from_recipe and getattr(self, name) == RECIPES[self.recipe][name]:
                setattr(self, name, value)

    def final_fit_for(self, labelled_papers: int) -> str:
        """The `final_fit` mode of a run on a table of `labelled_papers` papers (what `auto` stands for there)."""
        if self.final_fit != FINAL_FIT_AUTO:
            return self.final_fit
        return FINAL_FIT_ALL if labelled_papers < SMALL_TABLE_PAPERS else NO_FINAL_FIT

    def fit_epochs_to(self, train_papers: int) -> None:
        """The training length rule, for `num_train_epochs` left to the recipe (not given, nor changed since): the
        recipe's epochs, or as many as it takes to make `min_train_steps` optimizer steps over `train_papers`
        papers, but at most `max_train_epochs`. A run of `max_steps` is left alone."""
        recipe_values = {
            RECIPES[self.recipe]["num_train_epochs"],
            MULTI_LABEL_CHANGES[self.recipe].get("num_train_epochs"),
        }
        if "num_train_epochs" not in self._options_from_recipe or self.num_train_epochs not in recipe_values:
            return
        if self.max_steps > 0:
            return
        papers_per_step = self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps
        steps_per_epoch = max(1, train_papers // papers_per_step)
        needed = math.ceil(self.min_train_steps / steps_per_epoch)
        self.num_train_epochs = float(max(self.num_train_epochs, min(self.max_train_epochs, needed)))

    def _check_plateau_kwargs(self):
        # Kwargs given on the command line replace the recipe's dict whole: without "mode" the scheduler
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
    """Parses `argv` into `dataclass_types` (an `HfArgumentParser`); `TrainingArguments`' own refusals become
    `UserError`. The recipe's values fill the options not given, as for arguments built in Python."""
    parser = HfArgumentParser(dataclass_types, prog=prog)
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except UserError:
        raise
    except ValueError as error:  # `TrainingArguments`' own checks of what the flags ask for
        raise UserError(str(error)) from error
