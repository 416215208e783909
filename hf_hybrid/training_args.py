"""Command-line arguments of training and fine-tuning, as `HfArgumentParser` dataclasses.

`TrainingArguments` is reused whole, so every one of its flags works (`--output_dir`, `--seed`,
`--report_to`, `--push_to_hub`, ...); `HybridTrainingArguments` only changes its defaults to the
research notebook's recipe.
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments


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
