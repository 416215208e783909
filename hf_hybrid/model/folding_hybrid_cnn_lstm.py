"""Fast CPU inference for the hybrid CNN-LSTM model: `fold_for_inference()`'s word tables.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only ``torch`` and
its sibling layers file; the modeling file imports it only when a model is folded.
"""

import torch
from torch import nn

from .layers_hybrid_cnn_lstm import attention_pool


def fold_encoders(model, dtype: torch.dtype | str) -> None:
    r"""Sets `model._folded_encoders` to tables for `dtype`, reusing the current ones when they still fit.

    The embedding, each convolution and its BatchNorm (running statistics) are folded into table rows per word,
    kernel width and offset, so a convolution output costs a few row look-ups instead of `embed_dim *
    num_filters` multiply-adds per word and offset; the embedding and the first title LSTM layer's input
    weights are folded into a table of each word's input gates; and the title LSTMs skip the padding of
    batched titles.
    Outputs (logits, attention maps, fusion weights) stay those of the unfolded model: exactly in float32 up to
    summation order, to bf16 rounding with `dtype=torch.bfloat16` (half the memory). The tables take
    `(sum(kernel_sizes) * num_filters + 8 * lstm_hidden) * (vocab_size + 1)` values (1,024 MB in float32 at the
    default size: 614 MB of convolution tables, 410 MB of input gates).
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
    """Both branches at inference: the embedding folded into the convolutions and into the title LSTM's input gates.

    In eval mode the branch is linear up to each ReLU: embedding lookup, convolution, BatchNorm with its
    running statistics. So for each kernel width and offset `j`, the embedding matrix times the kernel's
    slice at `j`, scaled by BatchNorm, is one row of `num_filters` values per word, and a convolution
    output is a bias plus the sum of `width` looked-up rows, instead of `embed_dim * num_filters * width`
    multiply-adds per position. The table holds, for each word, its `sum(kernel_sizes)` rows side by side
    (every width's offsets; the bias added to each width's offset 0, which every output sums once), and
    one more word, `vocab_size`, for padding (zeros but for the biases). One `embedding_bag` then gives
    every width's outputs at once, already concatenated; the rows that neighbouring positions read lie
    close together in memory.

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
        encoder = model.abstract_encoder
        self.widths = [conv.kernel_size[0] for conv in encoder.convs]
        filters = encoder.convs[0].out_channels
        # Built in place, one width at a time: the peak memory is the table and one width's float32 rows.
        self.table = torch.empty(self.vocab_size + 1, sum(self.widths), filters, dtype=dtype)
        self.table[-1] = 0
        vectors = model.embedding.weight.float()
        slots = self.table.split(self.widths, dim=1)
        for conv, norm, slot in zip(encoder.convs, encoder.norms, slots):
            scale = torch.rsqrt(norm.running_var.float() + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight.float()
            shift = -norm.running_mean.float() * scale
            if norm.bias is not None:
                shift = shift + norm.bias.float()
            bias = shift if conv.bias is None else conv.bias.float() * scale + shift
            # (vocab, width, filters): offset j's slice of the kernel applied to every word, BatchNorm-scaled.
            rows = torch.einsum("vd,fdj->vjf", vectors, conv.weight.float()) * scale
            rows[:, 0] += bias
            slot[:-1] = rows
            slot[-1, 0] = bias
        self.table = self.table.view(-1, filters)
        self.title_lstm = FoldedBiLSTM(model, dtype)

    def _source_tensors(self):
        tensors = [self.model.embedding.weight]
        for conv, norm in zip(self.model.abstract_encoder.convs, self.model.abstract_encoder.norms):
            tensors += [conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        tensors += list(self.model.title_encoder.lstm.parameters())
        return [tensor for tensor in tensors if tensor is not None]

    def _fingerprint(self):
        return [(id(t), t._version, t.device, t.dtype) for t in self._source_tensors()]

    @property
    def num_bytes(self) -> int:
        tables = [self.table, self.title_lstm.gate_table]
        return sum(table.numel() * table.element_size() for table in tables)

    def is_current(self) -> bool:
        return self._fingerprint() == self.fingerprint

    def checked(self) -> "FoldedEncoders":
        """Itself, after making sure that the weights it was folded from have not changed since."""
        if not self.is_current():
            raise RuntimeError(
                "the model's embedding, convolution, BatchNorm or title LSTM weights changed after "
                "fold_for_inference(): call model.fold_for_inference() again"
            )
        return self

    def encode_title(self, input_ids, mask):
        """TitleEncoder's output, from the word ids, through `FoldedBiLSTM` (a single title too: its first layer's
        input gates are table rows, where the model's own LSTMs multiply them out, at about twice the cost)."""
        _check_ids(input_ids, self.vocab_size, "title_input_ids")
        encoder = self.model.title_encoder
        states = self.title_lstm(input_ids, mask)
        return attention_pool(states, _attention_scores(encoder.attention, states), mask)

    def encode_abstract(self, input_ids, mask):
        """AbstractEncoder's output, from the word ids: each convolution output a sum of looked-up table rows."""
        _check_ids(input_ids, self.vocab_size, "abstract_input_ids")
        padding = self.vocab_size
        ids = input_ids.masked_fill(~mask, padding)
        slots, rows, first = sum(self.widths), [], 0
        for width in self.widths:
            # The same padding as AbstractEncoder: outputs as long as the text, zeros beyond its edges.
            padded = nn.functional.pad(ids, ((width - 1) // 2, width // 2), value=padding)
            rows.append(padded.unfold(1, width, 1) * slots + torch.arange(first, first + width, device=ids.device))
            first += width
        # One bag per position and width: `slots` rows per position, in `len(widths)` bags.
        bag_starts = torch.tensor([0, *self.widths[:-1]], device=ids.device).cumsum(0)
        offsets = (torch.arange(ids.numel(), device=ids.device).unsqueeze(1) * slots + bag_starts).view(-1)
        summed = nn.functional.embedding_bag(torch.cat(rows, dim=-1).view(-1), self.table, offsets, mode="sum")
        maps = torch.relu_(summed.float()).view(*ids.shape, -1)
        return attention_pool(maps, _attention_scores(self.model.abstract_encoder.attention, maps), mask)


def _check_ids(input_ids, vocab_size, name):
    # A table holds several blocks of `vocab_size + 1` rows: an id outside the vocabulary would read another's row.
    if input_ids.numel() and (int(input_ids.max()) >= vocab_size or int(input_ids.min()) < 0):
        raise IndexError(f"{name} holds an id < 0 or >= vocab_size ({vocab_size})")


def _attention_scores(attention, features):
    """`attention(features).squeeze(-1)` for an `nn.Linear(dim, 1)`, as one vector product per paper: spread over
    the threads, where the single `(batch * length, dim)` product a `Linear` makes runs on one."""
    weight = attention.weight.expand(features.shape[0], 1, -1)
    return torch.baddbmm(attention.bias.view(1, 1, 1), weight, features.transpose(1, 2)).squeeze(1)


def _sigmoid_gates(weight, hidden):
    """LSTM weights in the gate order (input, forget, output, cell) instead of PyTorch's (input, forget, cell,
    output), the cell gate's doubled: `tanh(x) = 2 * sigmoid(2 * x) - 1`, so one sigmoid covers all four gates
    (a sigmoid costs a fifth of a tanh here), and doubling is exact in floating point."""
    return torch.cat([weight[: 2 * hidden], weight[3 * hidden :], 2 * weight[2 * hidden : 3 * hidden]])


class FoldedBiLSTM:
    """The title's `BidirectionalLSTM` in eval mode, both directions of a layer computed together, each title
    read over its own length only (as packed sequences are: about half the work of padded batches).

    The first layer's input gates are a word's embedding times its input weights plus both biases: for each
    direction, one table row per word (`gate_table`, with a row of biases alone for padding, which an empty
    title reads), so that layer costs only its recurrence. The recurrence is a loop over time steps, each step
    one batched matrix product for both directions. Positions are kept in packed order: step-major, the titles
    sorted by length, so that the titles still running at step `t` are the first `batch_sizes[t]`; the
    backward direction's step `t` of a title is its word at `length - 1 - t`.
    """

    def __init__(self, model, dtype: torch.dtype):
        bilstm = model.title_encoder.lstm
        self.hidden = hidden = bilstm.forward_layers[0].hidden_size
        self.vocab_size = model.embedding.num_embeddings
        self.layers = []  # (input weights, recurrent weights, biases) per layer, both directions stacked
        for directions in zip(bilstm.forward_layers, bilstm.backward_layers):

            def stacked(values, directions=directions):
                return torch.stack([_sigmoid_gates(values(lstm).float(), hidden) for lstm in directions])

            # Transposed weights, `(2, inputs, 4 * hidden)`, for batched products of row vectors.
            input_weights = stacked(lambda lstm: lstm.weight_ih_l0).transpose(1, 2).contiguous()
            recurrent_weights = stacked(lambda lstm: lstm.weight_hh_l0).transpose(1, 2).contiguous()
            biases = stacked(lambda lstm: lstm.bias_ih_l0 + lstm.bias_hh_l0).unsqueeze(1)
            if self.layers:
                # Above the first layer, a direction's input at a position is [forward state, backward state]
                # there. Each direction is given [its own states, the other's reversed] in its step order, so the
                # backward direction's weights have their halves swapped: one batched product for both.
                input_weights = torch.stack([input_weights[0], input_weights[1].roll(-hidden, dims=0)])
            self.layers.append((input_weights, recurrent_weights, biases))
        input_weights, _, biases = self.layers[0]
        vectors = nn.functional.pad(model.embedding.weight.float(), (0, 0, 0, 1))  # row `vocab_size`: padding
        gates = torch.baddbmm(biases, vectors.expand(2, -1, -1), input_weights)
        # Rows of the forward direction, then of the backward one.
        self.gate_table = gates.reshape(-1, gates.shape[-1]).to(dtype)

    def __call__(self, input_ids, mask):
        """The last layer's states of both directions, `(batch, length, 2 * hidden)`, zeros on padding."""
        batch, length = mask.shape
        # An empty title keeps one (masked) position, as the unfolded LSTMs read it.
        lengths, order = mask.sum(dim=1).clamp(min=1).sort(descending=True, stable=True)
        running = torch.arange(length, device=mask.device) < lengths.unsqueeze(1)
        steps, ranks = running.t().nonzero(as_tuple=True)  # packed positions, step-major
        size = steps.numel()
        packed_row = torch.empty(length, batch, dtype=torch.long, device=mask.device)
        packed_row[steps, ranks] = torch.arange(size, device=mask.device)
        # The packed row of the same title's word `length - 1 - step`: the backward direction's step order.
        reverse = packed_row[lengths[ranks] - 1 - steps, ranks]
        titles = order[ranks]
        batch_sizes = running.sum(dim=0).tolist()

        words = input_ids.masked_fill(~mask, self.vocab_size)[titles, steps]
        rows = torch.stack([words, words[reverse] + (self.vocab_size + 1)])
        states = self._recurrence(
            nn.functional.embedding(rows, self.gate_table).float(), self.layers[0][1], batch_sizes
        )
        hidden = self.hidden
        for input_weights, recurrent_weights, biases in self.layers[1:]:
            # Each direction's states, reversed within each title, for the other direction.
            swapped = states.view(2 * size, hidden)[torch.cat([reverse + size, reverse])].view(2, size, hidden)
            gates = torch.baddbmm(biases, torch.cat([states, swapped], dim=-1), input_weights)
            states = self._recurrence(gates, recurrent_weights, batch_sizes)
        position = titles * length + steps
        padded = states.new_zeros(batch * length, 2, hidden)
        padded[torch.stack([position, position[reverse]]), torch.tensor([[0], [1]], device=mask.device)] = states
        return padded.view(batch, length, 2 * hidden)

    def _recurrence(self, input_gates, recurrent_weights, batch_sizes):
        """Both directions' states, `(2, packed positions, hidden)`, from their input gates in packed order.

        With the cell gate's pre-activation doubled (`_sigmoid_gates`), its tanh is `2 * sigmoid - 1`; the cell
        state is kept doubled too (`double_cell`, exact), so that `tanh(cell) = 2 * sigmoid(double_cell) - 1`.
        """
        hidden = self.hidden
        states = input_gates.new_empty(2, input_gates.shape[1], hidden)
        state = double_cell = input_gates.new_zeros(2, batch_sizes[0], hidden)
        start = 0
        for size in batch_sizes:
            if size == 0:
                break
            gates = torch.baddbmm(input_gates[:, start : start + size], state[:, :size], recurrent_weights)
            input_gate, forget_gate, output_gate, cell_gate = gates.sigmoid_().view(2, size, 4, hidden).unbind(2)
            # double_cell = forget * double_cell + 2 * input * (2 * cell_gate - 1)
            double_cell = torch.addcmul(forget_gate * double_cell[:, :size], input_gate, cell_gate, value=4)
            double_cell.sub_(input_gate, alpha=2)
            state = states[:, start : start + size]
            # state = output * (2 * sigmoid(double_cell) - 1)
            torch.addcmul(output_gate.neg(), output_gate, double_cell.sigmoid(), value=2, out=state)
            start += size
        return states
