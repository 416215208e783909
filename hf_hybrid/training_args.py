"""Command-line arguments of training and fine-tuning, as `HfArgumentParser` dataclasses.

`TrainingArguments` is reused whole, so every one of its flags works (`--output_dir`, `--seed`,
`--report_to`, `--push_to_hub`, ...); `HybridTrainingArguments` changes its defaults to hf-hybrid's
recipe, and `--recipe notebook` swaps in the research notebook's (see `RECIPES`).
"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

DEFAULT_RECIPE = "default"
NOTEBOOK_RECIPE = "notebook"
# What `--recipe notebook` changes: the research notebook's Adam with L2 weight decay on every parameter,
# learning rate halved after 3 epochs without a better validation accuracy, up to 20 epochs with early
# stopping after 5, and a random N(0, 1) embedding. Flags given explicitly still win.
RECIPES = {
    DEFAULT_RECIPE: {},
    NOTEBOOK_RECIPE: {
        "init_embeddings": "random",
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "lr_scheduler_type": "reduce_lr_on_plateau",
        "lr_scheduler_kwargs": {"mode": "max", "factor": 0.5, "patience": 3},
        "warmup_steps": 0,
        "num_train_epochs": 20.0,
        "early_stopping_patience": 5,
    },
}


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
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the model's own loss."})
    wide_branch: bool = field(
        default=False,
        metadata={"help": "Add a linear branch over TF-IDF-weighted words and hashed word pairs (logits summed)."},
    )
    wide_bigram_buckets: int = field(default=1_048_576, metadata={"help": "Hash buckets of the wide branch's pairs."})
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
            "help": "'balanced' (inverse class frequency of the training split), 'none', or weights by label name, "
            "e.g. cs.AI=2.0 (unnamed labels get 1.0)."
        },
    )


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


@dataclass
class FinetuneArguments:
    """The model that fine-tuning starts from."""

    model: str = field(metadata={"help": "A folder or Hub repo id of a trained hf-hybrid model."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of the Hub repo."})
    class_weights: list[str] = field(
        default_factory=lambda: ["balanced"],
        metadata={"help": "As for training: 'balanced', 'none', or label=weight pairs."},
    )


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
    report_to: None | str | list[str] = "none"


def parse_training_arguments(dataclass_types, argv: list[str], prog: str) -> tuple:
    """Parses `argv` into `dataclass_types` (an `HfArgumentParser`), with the defaults of the `--recipe` it names."""
    parser = HfArgumentParser(dataclass_types, prog=prog)
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**{name: value for name, value in RECIPES[known.recipe].items() if hasattr(known, name)})
    return parser.parse_args_into_dataclasses(args=argv)
