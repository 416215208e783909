"""Fast CPU inference for the hybrid CNN-LSTM model: `fold_for_inference()`'s word tables.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only ``torch`` and
its sibling layers file; the modeling file imports it only when a model is folded.
"""

import torch
from torch import nn

from .layers_hybrid_cnn_lstm import attention_pool, reverse_within_length


def fold_encoders(model, dtype: torch.dtype | str) -> None:
    r"""Sets `model._folded_encoders` to tables for `dtype`, reusing the current ones when they still fit.

    The embedding, each convolution and its BatchNorm (running statistics) are folded into one table per kernel
    width and offset, so a convolution output costs a few row look-ups instead of `embed_dim * num_filters`
    multiply-adds per word and offset; and the title LSTMs skip the padding of batched titles (packed sequences).
    Outputs (logits, attention maps, fusion weights) stay those of the unfolded model: exactly in float32 up to
    summation order, to bf16 rounding with `dtype=torch.bfloat16` (half the memory). The tables take
    `sum(kernel_sizes) * (vocab_size + 1) * num_filters` values (614 MB in float32 at the default size).
    """
    if model.training:
        raise RuntimeError(
            "fold_for_inference() folds BatchNorm's running statistics and skips dropout, which only "
            "inference does: call model.eval() first"
        )
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"fold_for_inference() keeps its tables in torch.float32 or torch.bfloat16, not {dtype}")
    folded = model._folded_encoders
    if folded is None or folded.dtype != dtype or not folded.is_current():
        model._folded_encoders = None  # frees the old tables before the new ones are built
        with torch.no_grad():
            model._folded_encoders = FoldedEncoders(model, dtype)


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

    def __init__(self, model, dtype: torch.dtype):
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

    def checked(self) -> "FoldedEncoders":
        """Itself, after making sure that the weights it was folded from have not changed since."""
        if not self.is_current():
            raise RuntimeError(
                "the model's embedding, convolution or BatchNorm weights changed after fold_for_inference(): "
                "call model.fold_for_inference() again"
            )
        return self

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
                    lstm(
                        nn.utils.rnn.pack_padded_sequence(
                            inputs, packed_lengths, batch_first=True, enforce_sorted=False
                        )
                    )[0],
                    batch_first=True,
                    total_length=mask.shape[1],
                )[0]
                for lstm, inputs in (
                    (forward_lstm, sequences),
                    (backward_lstm, reverse_within_length(sequences, reverse_index)),
                )
            ]
            sequences = torch.cat([states[0], reverse_within_length(states[1], reverse_index)], dim=-1)
        return attention_pool(sequences, encoder.attention(sequences).squeeze(-1), mask)

    def encode_abstract(self, input_ids, mask):
        """AbstractEncoder's output, from the word ids: each convolution output a sum of looked-up table rows."""
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
