"""The layers of the hybrid CNN-LSTM paper classifier, which `modeling_hybrid_cnn_lstm.py` puts together: the title
encoder (a BiLSTM over each title's own words), the abstract encoder (parallel convolutions), their attention
pooling, the gated fusion of the two, and the optional wide bag-of-n-grams branch.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only ``torch`` and its
sibling configuration file.
"""

import torch
from torch import nn

from .configuration_hybrid_cnn_lstm import HybridCNNLSTMConfig


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
    abstract together), each feature weighted by its inverse document frequency in the training split (`idf`, set
    by `count_document_frequencies`) times `1 + ln(count)` of its count in the paper (`sublinear_tf`, as
    scikit-learn's `TfidfVectorizer(sublinear_tf=True)`; else each occurrence counts alike), the weights of a paper
    L2-normalised, as TF-IDF does.

    Feature ids: a word's id, or `vocab_size` plus the hash bucket of a pair of neighbouring words. `bias` (one
    per label) stays at zero unless the branch is fitted alone (training's `--wide_fit lbfgs`).
    """

    # Multipliers of the pair hash: word ids stay far below 2**31, so the products fit in int64.
    PAIR_HASH = (1_000_003, 2_654_435_761)

    def __init__(self, config: HybridCNNLSTMConfig):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.buckets = config.wide_bigram_buckets
        self.sublinear_tf = config.wide_sublinear_tf
        self.weight = nn.Parameter(torch.zeros(config.vocab_size + config.wide_bigram_buckets, config.num_labels))
        self.bias = nn.Parameter(torch.zeros(config.num_labels))
        self.register_buffer("idf", torch.ones(config.vocab_size + config.wide_bigram_buckets))

    def features(self, input_ids, mask):
        """Each position's word id and the bucket of the pair it starts, with the mask of the real ones."""
        first, second = self.PAIR_HASH
        pairs = self.vocab_size + (input_ids[:, :-1] * first + input_ids[:, 1:] * second) % self.buckets
        return torch.cat([input_ids, pairs], dim=1), torch.cat([mask, mask[:, :-1] & mask[:, 1:]], dim=1)

    @torch.no_grad()
    def count_document_frequencies(self, tokenizer, papers, batch_size: int = 1000) -> None:
        """Sets `idf` from the training papers (rows with a title and an abstract, e.g. a `datasets.Dataset`): each
        feature's smoothed inverse document frequency, as scikit-learn's TF-IDF: ln((1 + n) / (1 + df)) + 1. A
        feature no training paper has (a word pair never seen) and `<UNK>` get 0: as TF-IDF leaves out what is not
        in its vocabulary, they weigh nothing, in the paper's norm neither."""
        frequency = torch.zeros_like(self.idf, dtype=torch.long)
        for start in range(0, len(papers), batch_size):
            rows = papers[start : start + batch_size]
            batch = tokenizer(rows["title"], rows["abstract"], padding=True, return_tensors="pt")
            features = [
                self.features(batch[f"{field}_input_ids"], batch[f"{field}_attention_mask"].bool())
                for field in ("title", "abstract")
            ]
            ids = torch.cat([ids for ids, _ in features], dim=1)
            real = torch.cat([mask for _, mask in features], dim=1)
            ids = torch.where(real, ids, -1).sort(dim=1).values  # each paper's features, each once
            first = torch.ones_like(real)
            first[:, 1:] = ids[:, 1:] != ids[:, :-1]
            frequency += torch.bincount(ids[first & (ids >= 0)], minlength=len(frequency))
        idf = torch.log((1.0 + len(papers)) / (1.0 + frequency.to(self.idf))) + 1.0
        idf[frequency == 0] = 0.0
        idf[tokenizer.unk_token_id] = 0.0
        self.idf.copy_(idf)

    def weighted_features(self, title_input_ids, title_mask, abstract_input_ids, abstract_mask):
        """Each position's feature id and its weight (0 for padding): a paper's logits are the weighted sum of
        its features' rows of `weight`."""
        title_ids, title_real = self.features(title_input_ids, title_mask)
        abstract_ids, abstract_real = self.features(abstract_input_ids, abstract_mask)
        ids, real = torch.cat([title_ids, abstract_ids], dim=1), torch.cat([title_real, abstract_real], dim=1)
        if not self.sublinear_tf:
            weights = self.idf[ids] * real
            return ids, weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
        # Each occurrence of a feature seen `count` times in the paper carries 1/count of the feature's weight
        # idf * (1 + ln count); the paper's norm is that of its features' weights.
        same = (ids.unsqueeze(2) == ids.unsqueeze(1)) & real.unsqueeze(1) & real.unsqueeze(2)
        count = same.sum(dim=2).clamp_min(1).to(self.idf.dtype)
        weights = self.idf[ids] * (1 + count.log()) / count * real
        norm = (weights.square() * count).sum(dim=1, keepdim=True).sqrt()
        return ids, weights / norm.clamp_min(1e-12)

    def forward(self, title_input_ids, title_mask, abstract_input_ids, abstract_mask):
        ids, weights = self.weighted_features(title_input_ids, title_mask, abstract_input_ids, abstract_mask)
        return torch.bmm(weights.unsqueeze(1), self.weight[ids]).squeeze(1) + self.bias
