"""Configuration of the hybrid CNN-LSTM paper classifier.

This file is shipped with every saved model and runs under ``trust_remote_code``:
it imports nothing but ``transformers``.
"""

from transformers import PretrainedConfig

MODEL_TYPE = "hybrid_cnn_lstm"
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
# The smallest vocabulary a model can learn from: <PAD>, <UNK> and one word.
MIN_VOCAB_SIZE = 3
# The temperatures a config accepts: beyond them, dividing float32 scores by one overflows (NaN probabilities) or
# leaves every probability uniform.
MIN_TEMPERATURE = 1e-6
MAX_TEMPERATURE = 1e6

# The fields that hold one number (or flag): a NumPy or PyTorch scalar given for one is stored as the Python value.
SCALAR_FIELDS = (
    "vocab_size",
    "embed_dim",
    "num_filters",
    "lstm_hidden",
    "lstm_layers",
    "dropout",
    "embedding_dropout",
    "output_dropout",
    "max_title_length",
    "max_abstract_length",
    "pad_token_id",
    "label_smoothing",
    "wide_branch",
    "wide_bigram_buckets",
    "calibration_temperature",
)

# Every saved model can be loaded by all of these Auto classes, whichever one saved it.
AUTO_MAP = {
    "AutoConfig": "configuration_hybrid_cnn_lstm.HybridCNNLSTMConfig",
    "AutoModel": "modeling_hybrid_cnn_lstm.HybridCNNLSTMModel",
    "AutoModelForSequenceClassification": "modeling_hybrid_cnn_lstm.HybridCNNLSTMForSequenceClassification",
}


class HybridCNNLSTMConfig(PretrainedConfig):
    r"""Every hyperparameter of [`HybridCNNLSTMModel`], with its default: the notebook's model, plus the wide branch.

    Training takes each one as a flag of the same name, where its help says what it does (`hf-hybrid train
    --help`), but these, which training derives:

    Args:
        pad_token_id: id of `<PAD>`; its embedding stays zero.
        class_weights: optional weight per label, in label-id order: of the cross-entropy's classes, or, in
            multi-label classification, of each label's positive papers in its binary cross-entropy.
        calibration_temperature: the model's raw scores are divided by it before they are returned as `logits`, so
            that their softmax gives calibrated probabilities; training fits it on the validation split (temperature
            scaling). 1.0: no calibration. Dividing by one positive number never changes the predicted label.
        deep_weight: with `wide_branch`, the weight of the deep part's scores in their sum with the wide branch's,
            from 0 to 1; training lowers it from 1.0 where the validation split says the deep part's correction
            helps less than it claims (0: the wide branch alone).
        label_thresholds: multi-label classification only: each label's decision threshold on its probability,
            in label-id order, which training tunes on the validation split (None: 0.5 for every label).
        calibrated_weights_sha256: the SHA-256 of the weights that `calibration_temperature` and `label_thresholds`
            were fitted for (`weights_sha256`): a model saved with other weights (fine-tuned by any trainer) has
            both reset, with a warning, as they no longer hold.

    `vocab_size` counts every word id, `<PAD>` and `<UNK>` included. `wide_branch` adds a "wide" linear classifier
    over the paper's words and hashed word pairs (`wide_bigram_buckets` buckets), weighted by their inverse
    document frequency in the training split and, with `wide_sublinear_tf`, by `1 + ln(count)` of their count in
    the paper (else by the count); the model predicts with the product of both branches' probabilities. A
    config.json without `wide_branch` is of a model that has no wide branch, one without `wide_sublinear_tf` of a
    model whose branch weighs each occurrence alike.

    `problem_type` (`PretrainedConfig`'s own field) is `"single_label_classification"` (the default: one label per
    paper, softmax probabilities) or `"multi_label_classification"`: every label a paper is listed in, one sigmoid
    probability per label, the binary cross-entropy as loss, and a paper predicted to be of every label whose
    probability reaches its threshold.

    Example:

    ```python
    >>> from hf_hybrid import HybridCNNLSTMConfig
    >>> config = HybridCNNLSTMConfig(vocab_size=1000, id2label={0: "cs.AI", 1: "cs.CL"})
    >>> config.num_labels, config.kernel_sizes
    (2, [3, 4, 5])
    ```
    """

    model_type = MODEL_TYPE
    # The attention maps and the wide branch's share of the logits are for explanations: the Trainer's predictions
    # are the logits alone.
    keys_to_ignore_at_inference = ["title_attention", "abstract_attention", "fusion_weights", "wide_logits"]

    vocab_size: int = 50000
    embed_dim: int = 300
    num_filters: int = 256
    kernel_sizes: list[int] | tuple[int, ...] = (3, 4, 5)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    dropout: float = 0.5
    embedding_dropout: float = 0.25
    output_dropout: float = 0.4
    classifier_hidden_sizes: list[int] | tuple[int, ...] = (512, 256)
    max_title_length: int = 30
    max_abstract_length: int = 200
    pad_token_id: int = 0
    class_weights: list[float] | None = None
    label_smoothing: float = 0.0
    wide_branch: bool = True
    wide_bigram_buckets: int = 1_048_576
    wide_sublinear_tf: bool = True
    calibration_temperature: float = 1.0
    deep_weight: float = 1.0
    label_thresholds: list[float] | None = None
    calibrated_weights_sha256: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.problem_type is None:
            self.problem_type = SINGLE_LABEL
        for name in SCALAR_FIELDS:
            setattr(self, name, python_number(getattr(self, name)))
        for name in ("class_weights", "label_thresholds"):
            values = getattr(self, name)
            if isinstance(values, (list, tuple)):
                setattr(self, name, [python_number(value) for value in values])
        self.kernel_sizes = _integer_list("kernel_sizes", self.kernel_sizes)
        self.classifier_hidden_sizes = _integer_list("classifier_hidden_sizes", self.classifier_hidden_sizes)
        if self.label2id is None:
            self.label2id = {label: index for index, label in self.id2label.items()}
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        self._check_values()

    @property
    def is_multi_label(self) -> bool:
        """Whether the model predicts every label a paper is listed in (sigmoid probabilities) rather than one."""
        return self.problem_type == MULTI_LABEL

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        # `transformers` answers a folder or repo without config.json with an empty dict, which would
        # silently become the default (untrained-size) configuration.
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if not config_dict:
            raise OSError(f"{pretrained_model_name_or_path} has no config.json: re-download or re-save the model")
        # Saved configs write every field: a config.json without `wide_branch` is of a model without the branch.
        config_dict.setdefault("wide_branch", False)
        config_dict.setdefault("wide_sublinear_tf", False)
        return config_dict, kwargs

    def _check_values(self):
        positive = (
            "vocab_size",
            "embed_dim",
            "num_filters",
            "lstm_hidden",
            "lstm_layers",
            "max_title_length",
            "max_abstract_length",
            "wide_bigram_buckets",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"`vocab_size` must be at least {MIN_VOCAB_SIZE} (<PAD>, <UNK> and one word), got {self.vocab_size}"
            )
        if not self.kernel_sizes or any(size <= 0 for size in self.kernel_sizes):
            raise ValueError(f"`kernel_sizes` must be a non-empty list of positive widths, got {self.kernel_sizes}")
        if any(size <= 0 for size in self.classifier_hidden_sizes):
            raise ValueError(f"`classifier_hidden_sizes` must be positive, got {self.classifier_hidden_sizes}")
        for name in ("dropout", "embedding_dropout", "output_dropout", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
        temperature = self.calibration_temperature
        number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
        if not number or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
            raise ValueError(
                f"`calibration_temperature` must be a positive number from {MIN_TEMPERATURE:g} to "
                f"{MAX_TEMPERATURE:g} (1.0: uncalibrated), got {temperature!r}"
            )
        self.calibration_temperature = float(temperature)
        weight = self.deep_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight <= 1:
            raise ValueError(f"`deep_weight` must be a number from 0 to 1, got {weight!r}")
        self.deep_weight = float(weight)
        if self.problem_type not in (SINGLE_LABEL, MULTI_LABEL):
            raise ValueError(f"`problem_type` must be {SINGLE_LABEL!r} or {MULTI_LABEL!r}, got {self.problem_type!r}")
        if self.label_thresholds is not None:
            thresholds = self.label_thresholds
            if self.problem_type != MULTI_LABEL:
                raise ValueError(
                    f"`label_thresholds` are for multi-label classification (`problem_type` {MULTI_LABEL!r})"
                )
            if (
                not isinstance(thresholds, (list, tuple))
                or len(thresholds) != self.num_labels
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds)
            ):
                raise ValueError(
                    f"`label_thresholds` needs one probability from 0 to 1 per label ({self.num_labels}), "
                    f"got {thresholds!r}"
                )
            self.label_thresholds = [float(t) for t in thresholds]
        digest = self.calibrated_weights_sha256
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
            raise ValueError(f"`calibrated_weights_sha256` must be a SHA-256 hex digest or null, got {digest!r}")
        for name in ("wide_branch", "wide_sublinear_tf"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` must be a word id below vocab_size, got {self.pad_token_id}")
        if self.class_weights is not None:
            if not isinstance(self.class_weights, (list, tuple)) or not all(
                isinstance(weight, (int, float)) and not isinstance(weight, bool) for weight in self.class_weights
            ):
                raise ValueError(f"`class_weights` must be a list of numbers, got {self.class_weights!r}")
            self.class_weights = [float(weight) for weight in self.class_weights]
            if len(self.class_weights) != self.num_labels:
                raise ValueError(
                    f"`class_weights` needs one weight per label ({self.num_labels}), got {len(self.class_weights)}"
                )
            if any(weight < 0 for weight in self.class_weights) or sum(self.class_weights) == 0:
                raise ValueError(f"`class_weights` must be non-negative and not all zero, got {self.class_weights}")


def _integer_list(name, values):
    values = [python_number(v) for v in values] if isinstance(values, (list, tuple)) else values
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"`{name}` must be a list of integers, got {values!r}")
    return values


def python_number(value):
    """`value` as the Python number (or bool) it holds when it is a NumPy or PyTorch scalar, a 0-d array or tensor;
    anything else as it is. Options and results are then plain Python values, which `json` writes and every check
    reads alike."""
    return value.item() if getattr(value, "shape", None) == () and hasattr(value, "item") else value
