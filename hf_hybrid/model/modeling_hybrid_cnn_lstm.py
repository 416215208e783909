"""The hybrid CNN-LSTM paper classifier as a `transformers` model.

One word embedding feeds two branches: a bidirectional LSTM with additive attention reads the title,
parallel convolutions with global attention read the abstract. A learned two-way gate weighs the two
summaries, and an MLP head classifies their concatenation.

This file puts the layers of `layers_hybrid_cnn_lstm.py` together. It is shipped with every saved model and runs
under ``trust_remote_code``: it imports only ``torch``, ``transformers``, the standard library and its sibling files
(the folded inference path of `folding_hybrid_cnn_lstm.py` only when a model is folded; the pipeline's file for what
a saved config.json declares).
"""

import hashlib
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_hybrid_cnn_lstm import HybridCNNLSTMConfig
from .layers_hybrid_cnn_lstm import AbstractEncoder, BagOfNgrams, GatedFusion, TitleEncoder
from .loading_hybrid_cnn_lstm import (
    SafetensorError,
    check_loaded_weights,
    damaged_weights_error,
    unreadable_weights_error,
)
from .pipeline_arxiv_classification import CUSTOM_PIPELINE, PIPELINE_TASK

logger = logging.get_logger(__name__)


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
            scores whose softmax (sigmoid, in multi-label classification) gives the model's calibrated
            probabilities: the raw scores divided by `config.calibration_temperature`. Without `config.wide_branch`
            the raw scores are the head's output; with it, the head's log-probabilities times `config.deep_weight`
            plus the wide branch's (in multi-label classification, the head's log-odds times it plus the wide
            branch's).
        title_attention (`torch.FloatTensor` of shape `(batch_size, title_length)`, *optional*):
            attention over title words, zero on padding (with `output_attentions=True`).
        abstract_attention (`torch.FloatTensor` of shape `(batch_size, abstract_length)`, *optional*):
            attention over abstract words, zero on padding (with `output_attentions=True`).
        fusion_weights (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
            weight of the title and of the abstract; each row sums to one (with `output_attentions=True`).
        wide_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
            with `config.wide_branch`, the wide branch's own scores, whose softmax (sigmoid, in multi-label
            classification) gives its uncalibrated probabilities: its log-probabilities (its log-odds, in multi-label
            classification), already part of `logits`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    title_attention: torch.FloatTensor | None = None
    abstract_attention: torch.FloatTensor | None = None
    fusion_weights: torch.FloatTensor | None = None
    wide_logits: torch.FloatTensor | None = None


class HybridCNNLSTMPreTrainedModel(PreTrainedModel):
    r"""A model loaded by `from_pretrained` with trained BatchNorm statistics keeps them when it is trained further
    (`keep_batch_norm_statistics`): its BatchNorm layers normalise with them in training mode too, while their
    scales and shifts still learn. Any trainer (the `transformers` `Trainer` of a fine-tuning script included) then
    starts from the model as it was: at learning rate 0 it stays exactly the model it loaded, where re-estimating the
    statistics on the new batches lowered its validation accuracy (by 1.7 to 3.8 points in hf-hybrid's
    docs/works_with.md). Set `model.keep_batch_norm_statistics = False` to estimate them again.
    """

    config_class = HybridCNNLSTMConfig
    base_model_prefix = "hybrid"
    main_input_name = "title_input_ids"
    # The loss is a mean over the batch; the Trainer scales it for gradient accumulation itself.
    accepts_loss_kwargs = False
    keep_batch_norm_statistics = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which refuses weights that do not fit the config instead of
        initialising the misfits at random, says which file to fetch again when the weights are damaged, and that a
        weights file may not be read when it may not (`safetensors` calls it missing).

        `ignore_mismatched_sizes=True` still lets weights of another shape be re-initialised (a new head). The
        loaded model keeps its trained BatchNorm statistics in training (`keep_batch_norm_statistics`), and a
        calibrated one knows the weights its calibration was fitted for (`calibrated_weights_sha256`).
        """
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        with_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path,
                *model_args,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                **kwargs,
            )
        except SafetensorError as error:
            raise damaged_weights_error(pretrained_model_name_or_path, error) from error
        except FileNotFoundError as error:
            unreadable = unreadable_weights_error(error)
            if unreadable is None:
                raise
            raise unreadable from error
        check_loaded_weights(model, pretrained_model_name_or_path, info, allow_mismatch)
        model.keep_batch_norm_statistics = any(
            module.num_batches_tracked > 0 for module in model.modules() if isinstance(module, nn.BatchNorm1d)
        )
        if _is_calibrated(model.config) and model.config.calibrated_weights_sha256 is None:
            # Saved before the weights' digest was recorded: its calibration is of the weights it was saved with.
            model.config.calibrated_weights_sha256 = weights_sha256(model)
        return (model, info) if with_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with weights files that whoever may read the folder may read:
        `safetensors` writes them for their owner alone (mode 0600); they get the mode of any new file under the
        umask, as `config.json` beside them."""
        super().save_pretrained(save_directory, *args, **kwargs)
        umask = os.umask(0)
        os.umask(umask)
        for name in os.listdir(save_directory):
            if name.startswith("model") and name.endswith(".safetensors"):
                os.chmod(os.path.join(save_directory, name), 0o666 & ~umask)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.keep_batch_norm_statistics:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm1d):
                    module.eval()
        return self

    def fold_for_inference(self, dtype: torch.dtype | str = torch.float32):
        r"""Precomputes the abstract convolutions and the title LSTM's input gates as word tables (fast CPU inference).

        `dtype` is `torch.float32` (outputs exactly the unfolded model's, up to summation order) or `torch.bfloat16`
        (half the memory); returns the model. The tables are used in eval mode under `torch.no_grad()` /
        `torch.inference_mode()`; with autograd on, the model runs unfolded. `model.train()` discards them, and a
        forward pass after the folded weights changed raises instead of using stale tables. How:
        `folding_hybrid_cnn_lstm.fold_encoders`.
        """
        from .folding_hybrid_cnn_lstm import fold_encoders

        fold_encoders(self.base_model, dtype)
        return self

    @property
    def folded_for_inference(self) -> torch.dtype | None:
        """The dtype of the encoder's folded tables, or `None` when the model is not folded."""
        folded = self.base_model._folded_encoders
        return None if folded is None else folded.dtype

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
            init.zeros_(module.bias)
            init.ones_(module.idf)
        else:
            super()._init_weights(module)


def weights_sha256(model) -> str:
    """The SHA-256 of a model's weights and buffers, by name: what its calibration is recorded against."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _is_calibrated(config) -> bool:
    return config.calibration_temperature != 1.0 or config.label_thresholds is not None or config.deep_weight != 1.0


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

    # The tables of fold_for_inference(): derived from the weights, never saved.
    _folded_encoders = None

    def train(self, mode: bool = True):
        if mode:
            self._folded_encoders = None
        return super().train(mode)

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

        if self._folded_encoders is None or torch.is_grad_enabled():
            title, title_attention = self.title_encoder(self._embed(title_input_ids, title_mask), title_mask)
            abstract_embeddings = self._embed(abstract_input_ids, abstract_mask)
            abstract, abstract_attention = self.abstract_encoder(abstract_embeddings, abstract_mask)
        else:
            folded = self._folded_encoders.checked()
            title, title_attention = folded.encode_title(title_input_ids, title_mask)
            abstract, abstract_attention = folded.encode_abstract(abstract_input_ids, abstract_mask)
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
    classifiers that predict together: `logits` is the head's log-probabilities (times `config.deep_weight`) plus
    those of the bag of words and word pairs (`wide_logits`), i.e. the product of their probabilities, and `loss` is
    the sum of their two losses. `loss` is computed on the raw scores; `logits` are then divided by
    `config.calibration_temperature`.

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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, which also declares the `arxiv-classification` pipeline in config.json
        and writes its file (whoever saves the model: a Trainer's folder loads in both pipelines), and which resets
        the calibration (`calibration_temperature` and `deep_weight` to 1.0, `label_thresholds` to None) with a
        warning when the
        weights are no longer those it was fitted for: a calibration holds only for the weights it was fitted on.
        """
        self.config.custom_pipelines = {
            **(getattr(self.config, "custom_pipelines", None) or {}),
            PIPELINE_TASK: CUSTOM_PIPELINE,
        }
        if _is_calibrated(self.config):
            digest = weights_sha256(self)
            if self.config.calibrated_weights_sha256 is None:
                self.config.calibrated_weights_sha256 = digest
            elif self.config.calibrated_weights_sha256 != digest:
                logger.warning(
                    "the weights changed after the calibration (temperature %s%s) was fitted: it no longer holds and "
                    "is reset (temperature 1.0, uncalibrated); refit it on validation papers (hf-hybrid finetune does)",
                    self.config.calibration_temperature,
                    ", label thresholds" if self.config.label_thresholds is not None else "",
                )
                self.config.calibration_temperature = 1.0
                self.config.deep_weight = 1.0
                self.config.label_thresholds = None
                self.config.calibrated_weights_sha256 = None
        return super().save_pretrained(save_directory, *args, **kwargs)

    def label_loss(self, logits, labels):
        """The loss of `logits` against `labels`, with the config's class weights and label smoothing."""
        weight = None
        if self.config.class_weights is not None:
            weight = torch.tensor(self.config.class_weights, dtype=logits.dtype, device=logits.device)
        smoothing = self.config.label_smoothing
        if self.config.is_multi_label:
            # Smoothing moves each binary target towards 1/2, as cross-entropy's moves it towards 1/num_labels.
            targets = labels.to(logits.dtype) * (1 - smoothing) + smoothing / 2
            return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
        return nn.functional.cross_entropy(logits, labels.view(-1), weight=weight, label_smoothing=smoothing)

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
                title_input_ids,
                _mask_or_default(title_input_ids, title_attention_mask, pad),
                abstract_input_ids,
                _mask_or_default(abstract_input_ids, abstract_attention_mask, pad),
            )
            if not self.config.is_multi_label:
                wide_logits = wide_logits.log_softmax(dim=-1)

        loss = None
        if labels is not None:
            loss = self.label_loss(logits, labels)
            if wide_logits is not None:
                # Each branch learns on its own loss. Trained on their sum instead, the wide branch fits the
                # training papers first and leaves the deep one less to learn from.
                loss = loss + self.label_loss(wide_logits, labels)
        if wide_logits is not None:
            # The two classifiers predict together: the product of their probabilities, which for one label's
            # yes/no (multi-label) is the sum of their log-odds; the deep part's share weighs `deep_weight`.
            deep = logits if self.config.is_multi_label else logits.log_softmax(dim=-1)
            logits = self.config.deep_weight * deep + wide_logits
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
