"""The hybrid CNN-LSTM paper classifier as a `transformers` model.

One word embedding feeds two branches: a bidirectional LSTM with additive attention reads the title,
parallel convolutions with global attention read the abstract. A learned two-way gate weighs the two
summaries, and an MLP head classifies their concatenation.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only
``torch``, ``transformers`` and its sibling configuration file.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple
from transformers.utils import logging as transformers_logging

from .configuration_hybrid_cnn_lstm import HybridCNNLSTMConfig


@dataclass
class HybridCNNLSTMModelOutput(ModelOutput):
    r"""Output of [`HybridCNNLSTMModel`].

    Args:
        fused_representation (`torch.FloatTensor` of shape
            `(batch_size, 2 * lstm_hidden + num_filters * len(kernel_sizes))`):
            gated title summary concatenated with the gated abstract summary: what the head classifies.
        title_attention (`torch.FloatTensor` of shape `(batch_size, title_length)`):
            attention over title words; zero on padding.
        abstract_attention (`torch.FloatTensor` of shape `(batch_size, abstract_length)`):
            attention over abstract words; zero on padding.
        fusion_weights (`torch.FloatTensor` of shape `(batch_size, 2)`):
            weight of the title and of the abstract in the fused representation; each row sums to one.
    """

    fused_representation: torch.FloatTensor | None = None
    title_attention: torch.FloatTensor | None = None
    abstract_attention: torch.FloatTensor | None = None
    fusion_weights: torch.FloatTensor | None = None


@dataclass
class HybridCNNLSTMSequenceClassifierOutput(ModelOutput):
    r"""Output of [`HybridCNNLSTMForSequenceClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            the weighted, smoothed cross-entropy (binary, per label, in multi-label classification).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            the classification scores, divided by `config.calibration_temperature`: their softmax (their sigmoid,
            in multi-label classification) is the model's calibrated probabilities. With `config.wide_branch`, the
            raw scores are the deep part's log-probabilities plus the wide branch's (its log-odds plus the wide
            branch's, in multi-label classification).
        title_attention (`torch.FloatTensor` of shape `(batch_size, title_length)`, *optional*):
            attention over title words, zero on padding (with `output_attentions=True`).
        abstract_attention (`torch.FloatTensor` of shape `(batch_size, abstract_length)`, *optional*):
            attention over abstract words, zero on padding (with `output_attentions=True`).
        fusion_weights (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
            weight of the title and of the abstract; each row sums to one (with `output_attentions=True`).
        wide_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
            the wide branch's log-probabilities (log-odds, in multi-label classification), with
            `config.wide_branch`, before calibration.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    title_attention: torch.FloatTensor | None = None
    abstract_attention: torch.FloatTensor | None = None
    fusion_weights: torch.FloatTensor | None = None
    wide_logits: torch.FloatTensor | None = None


def attention_pool(features, scores, mask):
    """Softmax over the real positions of `scores`, then the weighted sum of `features`.

    A row with no real position gets all-zero weights and a zero summary instead of NaNs.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1) * mask
    return torch.bmm(weights.unsqueeze(1), features).squeeze(1), weights


def reverse_within_length(sequences, reverse_index):
    """Reverses each right-padded sequence up to its own length; padding stays at the end."""
    return sequences.gather(1, reverse_index.unsqueeze(-1).expand(-1, -1, sequences.shape[-1]))


class BidirectionalLSTM(nn.Module):
    """A stacked BiLSTM over right-padded sequences, whose backward direction starts at each sequence's
    last word rather than at the padding after it.

    Reversing each sequence within its length gives the same result as packing it, and keeps the
    model traceable for ONNX export, which packed sequences are not.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, sequences, mask):
        positions = torch.arange(sequences.shape[1], device=sequences.device)
        lengths = mask.sum(dim=1, keepdim=True)
        reverse_index = torch.where(positions < lengths, lengths - 1 - positions, positions)
        for depth, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if depth > 0:
                sequences = self.dropout(sequences)
            forward_states, _ = forward_lstm(sequences)
            backward_states, _ = backward_lstm(reverse_within_length(sequences, reverse_index))
            sequences = torch.cat([forward_states, reverse_within_length(backward_states, reverse_index)], dim=-1)
        return sequences


class TitleEncoder(nn.Module):
    """Stacked BiLSTM over the title words, summarised by additive self-attention."""

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__()
        self.lstm = BidirectionalLSTM(config.embed_dim, config.lstm_hidden, config.lstm_layers, config.dropout)
        self.attention = nn.Linear(2 * config.lstm_hidden, 1)

    def forward(self, embeddings, mask):
        states = self.lstm(embeddings, mask)
        return attention_pool(states, self.attention(states).squeeze(-1), mask)


class AbstractEncoder(nn.Module):
    """Parallel Conv1d + BatchNorm + ReLU, one per kernel width, summarised by global attention."""

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embed_dim, config.num_filters, width) for width in config.kernel_sizes
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(config.num_filters) for _ in config.kernel_sizes)
        self.attention = nn.Linear(config.num_filters * len(config.kernel_sizes), 1)

    def forward(self, embeddings, mask):
        channels_first = embeddings.transpose(1, 2)
        maps = []
        for conv, norm in zip(self.convs, self.norms):
            # Pad so every width's output is as long as the text (the notebook's k//2 made even widths one longer).
            width = conv.kernel_size[0]
            padded = nn.functional.pad(channels_first, ((width - 1) // 2, width // 2))
            maps.append(torch.relu(norm(conv(padded))))
        features = torch.cat(maps, dim=1).transpose(1, 2)
        return attention_pool(features, self.attention(features).squeeze(-1), mask)


class GatedFusion(nn.Module):
    """Scores each branch's summary, softmaxes the two scores and scales each summary by its weight."""

    def __init__(self, title_dim: int, abstract_dim: int):
        super().__init__()
        self.title_score = nn.Linear(title_dim, 1)
        self.abstract_score = nn.Linear(abstract_dim, 1)

    def forward(self, title, abstract):
        scores = torch.cat([self.title_score(title), self.abstract_score(abstract)], dim=1)
        weights = scores.softmax(dim=1)
        return torch.cat([title * weights[:, :1], abstract * weights[:, 1:]], dim=1), weights


class BagOfNgrams(nn.Module):
    """The optional "wide" branch: a linear classifier over a paper's words and hashed word pairs (title and
    abstract together), each occurrence weighted by the feature's inverse document frequency in the training
    split (`idf`, set by `set_document_frequencies`), the weights of a paper L2-normalised, as TF-IDF does.

    Feature ids: a word's id, or `vocab_size` plus the hash bucket of a pair of neighbouring words.
    """

    # Multipliers of the pair hash: word ids stay far below 2**31, so the products fit in int64.
    PAIR_HASH = (1_000_003, 2_654_435_761)

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.buckets = config.wide_bigram_buckets
        self.weight = nn.Parameter(torch.zeros(config.vocab_size + config.wide_bigram_buckets, config.num_labels))
        self.register_buffer("idf", torch.ones(config.vocab_size + config.wide_bigram_buckets))

    def features(self, input_ids, mask):
        """Each position's word id and the bucket of the pair it starts, with the mask of the real ones."""
        first, second = self.PAIR_HASH
        pairs = self.vocab_size + (input_ids[:, :-1] * first + input_ids[:, 1:] * second) % self.buckets
        return torch.cat([input_ids, pairs], dim=1), torch.cat([mask, mask[:, :-1] & mask[:, 1:]], dim=1)

    @torch.no_grad()
    def set_document_frequencies(self, document_frequency, documents: int):
        """Smoothed inverse document frequencies, as scikit-learn's TF-IDF: ln((1 + n) / (1 + df)) + 1."""
        self.idf.copy_(torch.log((1.0 + documents) / (1.0 + document_frequency.to(self.idf))) + 1.0)

    def forward(self, title_input_ids, title_mask, abstract_input_ids, abstract_mask):
        title_ids, title_real = self.features(title_input_ids, title_mask)
        abstract_ids, abstract_real = self.features(abstract_input_ids, abstract_mask)
        ids, real = torch.cat([title_ids, abstract_ids], dim=1), torch.cat([title_real, abstract_real], dim=1)
        weights = self.idf[ids] * real
        weights = weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.bmm(weights.unsqueeze(1), self.weight[ids]).squeeze(1)


# The hyperparameters that set the shapes of each part's weights, to name them when saved weights do not fit.
SHAPED_BY = {
    "embedding": ("vocab_size", "embed_dim"),
    "title_encoder": ("embed_dim", "lstm_hidden", "lstm_layers"),
    "abstract_encoder": ("embed_dim", "num_filters", "kernel_sizes"),
    "fusion": ("lstm_hidden", "num_filters", "kernel_sizes"),
    "classifier": ("lstm_hidden", "num_filters", "kernel_sizes", "classifier_hidden_sizes", "id2label"),
    "wide": ("wide_branch", "vocab_size", "wide_bigram_buckets", "id2label"),
}
WEIGHTS_FILE = "model.safetensors"


class _HeldRecords:
    """A logging filter that holds back the records of a load (its report table) until the load is known to be
    sound."""

    def __init__(self):
        self.records = []

    def filter(self, record):
        self.records.append(record)
        return False


class HybridCNNLSTMPreTrainedModel(PreTrainedModel):
    config_class = HybridCNNLSTMConfig
    base_model_prefix = "hybrid"
    main_input_name = "title_input_ids"
    # The loss is a mean over the batch; the Trainer scales it for gradient accumulation itself.
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which refuses weights that do not fit the config instead of
        initialising the misfits at random, and says which file to fetch again when the weights are damaged.

        `ignore_mismatched_sizes=True` still lets weights of another shape be re-initialised (a new head).
        """
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        with_info = kwargs.pop("output_loading_info", False)
        loading_logger = transformers_logging.get_logger("transformers.modeling_utils")
        held = _HeldRecords()
        loading_logger.addFilter(held)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, ignore_mismatched_sizes=True, output_loading_info=True,
                **kwargs,
            )
        except Exception as error:
            if type(error).__module__.startswith("safetensors"):
                raise OSError(
                    f"{pretrained_model_name_or_path}: {WEIGHTS_FILE} is truncated or corrupt ({error}): "
                    "download it again or re-save the model"
                ) from error
            raise
        finally:
            loading_logger.removeFilter(held)
        model._check_loaded_weights(pretrained_model_name_or_path, info, allow_mismatch)
        for record in held.records:
            loading_logger.handle(record)
        return (model, info) if with_info else model

    def _check_loaded_weights(self, source, info, allow_mismatch):
        """Raises when weights the model needs were missing from the file or did not fit the config."""
        problems = [f"{key} missing" for key in sorted(info["missing_keys"])]
        # A classifier checkpoint's head (and wide branch) is not a problem for the bare encoder; any other extra
        # weights mean that the config leaves out a part that was trained.
        encoder_parts = dict(self.named_children()) if self.base_model is self else None
        problems += [f"{key} unexpected" for key in sorted(info["unexpected_keys"])
                     if encoder_parts is None or key.split(".")[0] in encoder_parts]
        if not allow_mismatch:
            problems += [
                f"{key} is {tuple(saved)} in the file, {tuple(expected)} by the config"
                for key, saved, expected in sorted(info["mismatched_keys"])
            ]
        if problems:
            parts = {problem.removeprefix(f"{self.base_model_prefix}.").split(".")[0] for problem in problems}
            # The fields that shape every mismatched part are the likely culprits; else any of them.
            shaping = [set(SHAPED_BY.get(part, ())) for part in parts]
            fields = sorted(set.intersection(*shaping) or set.union(*shaping))
            shown = "; ".join(problems[:2]) + (f"; and {len(problems) - 2} more" if len(problems) > 2 else "")
            raise OSError(
                f"{source}: the weights in {WEIGHTS_FILE} do not match config.json ({shown}); "
                f"check {', '.join(fields) or 'the config'} in config.json, or re-save the model"
            )

    def _init_weights(self, module):
        """The notebook's scheme: Xavier for linear layers, Kaiming for convolutions, PyTorch's defaults elsewhere."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LSTM):
            bound = module.hidden_size**-0.5
            for parameter in module.parameters():
                init.uniform_(parameter, -bound, bound)
        elif isinstance(module, BagOfNgrams):
            # A feature the training split never had contributes nothing.
            init.zeros_(module.weight)
            init.ones_(module.idf)
        else:
            super()._init_weights(module)


def _mask_or_default(input_ids, attention_mask, pad_token_id):
    if attention_mask is None:
        return input_ids != pad_token_id
    return attention_mask.bool()


def _at_least_one_position(input_ids, mask, pad_token_id):
    """An empty field (no words at all) becomes one padding position, so the convolutions and LSTMs still run."""
    if input_ids.shape[1] > 0:
        return input_ids, mask
    return nn.functional.pad(input_ids, (0, 1), value=pad_token_id), nn.functional.pad(mask, (0, 1), value=False)


class HybridCNNLSTMModel(HybridCNNLSTMPreTrainedModel):
    r"""The encoder: title and abstract word ids in, fused representation and attention maps out.

    Example:

    ```python
    >>> import torch
    >>> from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMModel
    >>> model = HybridCNNLSTMModel(HybridCNNLSTMConfig(vocab_size=100, embed_dim=8, num_filters=4,
    ...                                                lstm_hidden=4, classifier_hidden_sizes=[8]))
    >>> out = model(title_input_ids=torch.tensor([[5, 6, 0]]), abstract_input_ids=torch.tensor([[7, 8, 9, 10]]))
    >>> out.fused_representation.shape, out.fusion_weights.sum().item()
    (torch.Size([1, 20]), 1.0)
    ```
    """

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__(config)
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.title_encoder = TitleEncoder(config)
        self.abstract_encoder = AbstractEncoder(config)
        self.fusion = GatedFusion(2 * config.lstm_hidden, config.num_filters * len(config.kernel_sizes))
        self.post_init()

    @property
    def hidden_size(self) -> int:
        return 2 * self.config.lstm_hidden + self.config.num_filters * len(self.config.kernel_sizes)

    def get_input_embeddings(self):
        return self.embedding

    def set_input_embeddings(self, value):
        self.embedding = value

    _folded_encoders = None

    def fold_for_inference(self, dtype: torch.dtype | str = torch.float32):
        r"""Precomputes the abstract convolutions as word tables, for fast CPU inference; returns the model.

        The embedding, each convolution and its BatchNorm (running statistics) are folded into one table
        per kernel width and offset, so a convolution output costs a few row look-ups instead of
        `embed_dim * num_filters` multiply-adds per word and offset; and the title LSTMs skip the padding
        of batched titles (packed sequences). Outputs (logits, attention maps, fusion weights) stay those
        of the unfolded model: exactly in float32 up to summation order, to bf16 rounding with
        `dtype=torch.bfloat16` (half the memory). The tables take
        `sum(kernel_sizes) * (vocab_size + 1) * num_filters` values (614 MB in float32 at the default
        size) and are never saved.

        The tables are used in eval mode under `torch.no_grad()` / `torch.inference_mode()` (as pipelines
        and `hf-hybrid` run); with autograd on, the model runs unfolded, so gradients reach every weight.
        `model.train()` discards them (fold again after training), and a forward pass after the folded
        weights changed in place (`load_state_dict`, an optimizer step) raises instead of using stale
        tables; folding again recomputes them.

        Example:

        ```python
        >>> import torch
        >>> from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMModel
        >>> model = HybridCNNLSTMModel(HybridCNNLSTMConfig(vocab_size=100, embed_dim=8, num_filters=4,
        ...                                                lstm_hidden=4, classifier_hidden_sizes=[8])).eval()
        >>> inputs = {"title_input_ids": torch.tensor([[5, 6]]), "abstract_input_ids": torch.tensor([[7, 8, 9]])}
        >>> with torch.no_grad():
        ...     plain = model(**inputs).fused_representation
        ...     fast = model.fold_for_inference()(**inputs).fused_representation
        >>> torch.allclose(plain, fast, atol=1e-6)
        True
        ```
        """
        if self.training:
            raise RuntimeError(
                "fold_for_inference() folds BatchNorm's running statistics and skips dropout, which only "
                "inference does: call model.eval() first"
            )
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"fold_for_inference() keeps its tables in torch.float32 or torch.bfloat16, not {dtype}")
        folded = self._folded_encoders
        if folded is None or folded.dtype != dtype or not folded.is_current():
            self._folded_encoders = None  # frees the old tables before the new ones are built
            with torch.no_grad():
                self._folded_encoders = FoldedEncoders(self, dtype)
        return self

    @property
    def folded_for_inference(self) -> torch.dtype | None:
        """The dtype of the tables of `fold_for_inference()`, or `None` when the model is not folded."""
        return None if self._folded_encoders is None else self._folded_encoders.dtype

    def train(self, mode: bool = True):
        if mode:
            self._folded_encoders = None
        return super().train(mode)

    def _folded_path(self):
        """The folded encoder when it applies to this forward pass (inference without autograd), else None."""
        folded = self._folded_encoders
        if folded is None or torch.is_grad_enabled():
            return None
        if not folded.is_current():
            raise RuntimeError(
                "the model's embedding, convolution or BatchNorm weights changed after fold_for_inference(): "
                "call model.fold_for_inference() again"
            )
        return folded

    def _embed(self, input_ids, mask):
        # Zeroing padded positions makes a convolution at the edge of the text see what it sees unbatched.
        return self.embedding_dropout(self.embedding(input_ids)) * mask.unsqueeze(-1)

    @can_return_tuple
    def forward(
        self,
        title_input_ids: torch.LongTensor,
        abstract_input_ids: torch.LongTensor,
        title_attention_mask: torch.Tensor | None = None,
        abstract_attention_mask: torch.Tensor | None = None,
    ) -> HybridCNNLSTMModelOutput:
        pad = self.config.pad_token_id
        title_mask = _mask_or_default(title_input_ids, title_attention_mask, pad)
        abstract_mask = _mask_or_default(abstract_input_ids, abstract_attention_mask, pad)
        title_input_ids, title_mask = _at_least_one_position(title_input_ids, title_mask, pad)
        abstract_input_ids, abstract_mask = _at_least_one_position(abstract_input_ids, abstract_mask, pad)

        folded = self._folded_path()
        title_encoder = self.title_encoder if folded is None else folded.encode_title
        title, title_attention = title_encoder(self._embed(title_input_ids, title_mask), title_mask)
        if folded is None:
            abstract, abstract_attention = self.abstract_encoder(
                self._embed(abstract_input_ids, abstract_mask), abstract_mask
            )
        else:
            abstract, abstract_attention = folded(abstract_input_ids, abstract_mask)
        fused, fusion_weights = self.fusion(title, abstract)
        return HybridCNNLSTMModelOutput(
            fused_representation=fused,
            title_attention=title_attention,
            abstract_attention=abstract_attention,
            fusion_weights=fusion_weights,
        )


class HybridCNNLSTMForSequenceClassification(HybridCNNLSTMPreTrainedModel):
    r"""The encoder plus the notebook's BatchNorm/Dropout MLP head.

    With `labels`, `loss` is the cross-entropy, weighted by `config.class_weights` and smoothed by
    `config.label_smoothing`; with `config.problem_type == "multi_label_classification"`, `labels` are multi-hot
    (one 0/1 per label) and `loss` is each label's binary cross-entropy, its positives weighted by
    `config.class_weights`. With `output_attentions=True`, the output also holds the encoder's
    `title_attention`, `abstract_attention` and `fusion_weights`. With `config.wide_branch`, the model is two
    classifiers that predict together: `logits` is the head's log-probabilities plus those of the bag of words
    and word pairs (`wide_logits`), i.e. the product of their probabilities, and `loss` is the sum of their two
    losses. `loss` is computed on the raw scores; `logits` are then divided by `config.calibration_temperature`.

    Example:

    ```python
    >>> import torch
    >>> from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification
    >>> config = HybridCNNLSTMConfig(vocab_size=100, embed_dim=8, num_filters=4, lstm_hidden=4,
    ...                              classifier_hidden_sizes=[8], id2label={0: "cs.AI", 1: "cs.CL"})
    >>> model = HybridCNNLSTMForSequenceClassification(config).eval()
    >>> out = model(title_input_ids=torch.tensor([[5, 6]]), abstract_input_ids=torch.tensor([[7, 8, 9]]),
    ...             labels=torch.tensor([1]))
    >>> out.logits.shape, out.loss.ndim
    (torch.Size([1, 2]), 0)
    ```
    """

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__(config)
        self.hybrid = HybridCNNLSTMModel(config)
        layers = []
        width = self.hybrid.hidden_size
        for hidden in config.classifier_hidden_sizes:
            layers += [nn.BatchNorm1d(width), nn.Dropout(config.dropout), nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers += [nn.BatchNorm1d(width), nn.Dropout(config.output_dropout), nn.Linear(width, config.num_labels)]
        self.classifier = nn.Sequential(*layers)
        self.wide = BagOfNgrams(config) if config.wide_branch else None
        self.post_init()

    def _loss(self, logits, labels):
        weight = None
        if self.config.class_weights is not None:
            weight = torch.tensor(self.config.class_weights, dtype=logits.dtype, device=logits.device)
        smoothing = self.config.label_smoothing
        if self.config.is_multi_label:
            # Smoothing moves each binary target towards 1/2, as cross-entropy's moves it towards 1/num_labels.
            targets = labels.to(logits.dtype) * (1 - smoothing) + smoothing / 2
            return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
        return nn.functional.cross_entropy(logits, labels.view(-1), weight=weight, label_smoothing=smoothing)

    def fold_for_inference(self, dtype: torch.dtype | str = torch.float32):
        """Folds the encoder for fast CPU inference and returns the model: see
        [`HybridCNNLSTMModel.fold_for_inference`]."""
        self.hybrid.fold_for_inference(dtype)
        return self

    @property
    def folded_for_inference(self) -> torch.dtype | None:
        """The dtype of the encoder's folded tables, or `None` when the model is not folded."""
        return self.hybrid.folded_for_inference

    @can_return_tuple
    def forward(
        self,
        title_input_ids: torch.LongTensor,
        abstract_input_ids: torch.LongTensor,
        title_attention_mask: torch.Tensor | None = None,
        abstract_attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
    ) -> HybridCNNLSTMSequenceClassifierOutput:
        encoded = self.hybrid(
            title_input_ids=title_input_ids,
            abstract_input_ids=abstract_input_ids,
            title_attention_mask=title_attention_mask,
            abstract_attention_mask=abstract_attention_mask,
        )
        logits = self.classifier(encoded.fused_representation)
        wide_logits = None
        if self.wide is not None:
            pad = self.config.pad_token_id
            wide_logits = self.wide(
                title_input_ids, _mask_or_default(title_input_ids, title_attention_mask, pad),
                abstract_input_ids, _mask_or_default(abstract_input_ids, abstract_attention_mask, pad),
            )
            if not self.config.is_multi_label:
                wide_logits = wide_logits.log_softmax(dim=-1)

        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
            if wide_logits is not None:
                # Each branch learns on its own loss. Trained on their sum instead, the wide branch fits the
                # training papers first and leaves the deep one less to learn from.
                loss = loss + self._loss(wide_logits, labels)
        if wide_logits is not None:
            # The two classifiers predict together: the product of their probabilities, which for one label's
            # yes/no (multi-label) is the sum of their log-odds.
            logits = logits + wide_logits if self.config.is_multi_label else logits.log_softmax(dim=-1) + wide_logits
        logits = logits / self.config.calibration_temperature

        if output_attentions is None:
            output_attentions = self.config.output_attentions
        maps = ("title_attention", "abstract_attention", "fusion_weights")
        return HybridCNNLSTMSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            wide_logits=wide_logits,
            **({name: encoded[name] for name in maps} if output_attentions else {}),
        )


class FoldedEncoders:
    """Both branches at inference: the embedding folded into the convolutions, titles packed for the LSTMs.

    In eval mode the branch is linear up to each ReLU: embedding lookup, convolution, BatchNorm with its
    running statistics. So for each kernel width and offset `j`, the embedding matrix times the kernel's
    slice at `j`, scaled by BatchNorm, is a table with one row of `num_filters` values per word, and a
    convolution output is a bias plus the sum of `width` looked-up rows: one `embedding_bag` per width
    instead of `embed_dim * num_filters * width` multiply-adds per position. Each width's table holds
    `width` blocks of `vocab_size + 1` rows; the extra row, all zeros, stands for padding.

    It is derived data, not a module: it is never saved, and it remembers which tensors (and which
    in-place versions of them) it was computed from, so that a forward pass after the model's weights
    changed or were replaced fails instead of silently using stale tables.
    """

    def __init__(self, model: "HybridCNNLSTMModel", dtype: torch.dtype):
        self.model = model
        self.dtype = dtype
        self.vocab_size = model.embedding.num_embeddings
        # Holding the source tensors keeps their ids from being reused by replacements.
        self.sources = self._source_tensors()
        self.fingerprint = self._fingerprint()
        self.tables, self.biases, self.widths = [], [], []
        vectors = model.embedding.weight.float()
        for conv, norm in zip(model.abstract_encoder.convs, model.abstract_encoder.norms):
            scale = torch.rsqrt(norm.running_var.float() + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight.float()
            shift = -norm.running_mean.float() * scale
            if norm.bias is not None:
                shift = shift + norm.bias.float()
            bias = shift if conv.bias is None else conv.bias.float() * scale + shift
            # (width, vocab, filters): offset j's slice of the kernel applied to every word, BatchNorm-scaled.
            table = torch.einsum("vd,fdj->jvf", vectors, conv.weight.float()) * scale
            table = nn.functional.pad(table, (0, 0, 0, 1))
            self.tables.append(table.reshape(-1, table.shape[-1]).to(dtype).contiguous())
            self.biases.append(bias)
            self.widths.append(conv.kernel_size[0])

    def _source_tensors(self):
        tensors = [self.model.embedding.weight]
        for conv, norm in zip(self.model.abstract_encoder.convs, self.model.abstract_encoder.norms):
            tensors += [conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        return [tensor for tensor in tensors if tensor is not None]

    def _fingerprint(self):
        return [(id(t), t._version, t.device, t.dtype) for t in self._source_tensors()]

    @property
    def num_bytes(self) -> int:
        return sum(table.numel() * table.element_size() for table in self.tables)

    def is_current(self) -> bool:
        return self._fingerprint() == self.fingerprint

    def encode_title(self, embeddings, mask):
        """TitleEncoder's output, with the LSTMs skipping the padding of batches of titles of unequal lengths.

        Packed sequences give each title's states exactly, and zeros instead of unused values on padding
        (which attention ignores): about half the LSTM work on typical batches.
        """
        encoder = self.model.title_encoder
        lengths = mask.sum(dim=1)
        if bool((lengths == mask.shape[1]).all()):
            return encoder(embeddings, mask)
        bilstm = encoder.lstm
        positions = torch.arange(mask.shape[1], device=mask.device)
        reverse_index = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
        # An empty title keeps one (masked) position, as the unfolded LSTMs read it.
        packed_lengths = lengths.clamp(min=1).cpu()
        sequences = embeddings
        for forward_lstm, backward_lstm in zip(bilstm.forward_layers, bilstm.backward_layers):
            states = [
                nn.utils.rnn.pad_packed_sequence(
                    lstm(nn.utils.rnn.pack_padded_sequence(
                        inputs, packed_lengths, batch_first=True, enforce_sorted=False))[0],
                    batch_first=True, total_length=mask.shape[1])[0]
                for lstm, inputs in ((forward_lstm, sequences),
                                     (backward_lstm, reverse_within_length(sequences, reverse_index)))
            ]
            sequences = torch.cat([states[0], reverse_within_length(states[1], reverse_index)], dim=-1)
        return attention_pool(sequences, encoder.attention(sequences).squeeze(-1), mask)

    def __call__(self, input_ids, mask):
        if input_ids.numel() and int(input_ids.max()) >= self.vocab_size:
            raise IndexError(f"abstract_input_ids holds an id >= vocab_size ({self.vocab_size})")
        padding_row = self.vocab_size
        ids = input_ids.masked_fill(~mask, padding_row)
        maps = []
        for width, table, bias in zip(self.widths, self.tables, self.biases):
            # The same padding as AbstractEncoder: outputs as long as the text, zeros beyond its edges.
            padded = nn.functional.pad(ids, ((width - 1) // 2, width // 2), value=padding_row)
            offsets = torch.arange(width, device=ids.device) * (self.vocab_size + 1)
            bags = (padded.unfold(1, width, 1) + offsets).reshape(-1, width)
            summed = nn.functional.embedding_bag(bags, table, mode="sum").float()
            maps.append(torch.relu_(summed.add_(bias)).view(*ids.shape, -1))
        # The attention scores and summaries of the concatenated maps, without concatenating them (a large copy).
        attention = self.model.abstract_encoder.attention
        parts = attention.weight.split([m.shape[-1] for m in maps], dim=1)
        scores = sum(nn.functional.linear(m, part) for m, part in zip(maps, parts)).squeeze(-1) + attention.bias
        pooled = [attention_pool(m, scores, mask) for m in maps]
        return torch.cat([summary for summary, _ in pooled], dim=-1), pooled[0][1]
