"""The research notebook's pipeline, re-implemented as-is: a COMPARISON BASELINE, not product code.

`scripts/benchmark.py` measures hf-hybrid against this module. Everything here follows the notebook
(`hybrid_cnn_lstm_arxiv_notebook.txt`) on purpose, slow parts included:

* `Vocabulary`: Python regex `tokenize`, a `Counter`, `encode` one text at a time;
* `HybridDataset`: encodes inside `__getitem__` and pads every item to 30 title / 200 abstract words;
* `make_loader`: a `DataLoader` with 2 worker processes;
* `HybridCNNLSTM`: the notebook's model, with ONE fix only: the notebook's `Conv1d(..., padding=k//2)`
  makes the even width (k=4) one step longer than the others, so `torch.cat` of the conv outputs crashed.
  Each conv output is now trimmed to the input length. Nothing else changed (no masking of padding in
  the LSTM or the abstract attention, BatchNorm/Dropout head as written);
* `make_optimization` / `train_step`: Adam (lr 1e-3, weight decay 1e-4), class-weighted cross-entropy,
  gradient clipping at 1.0, as in `train_epoch`;
* `save_checkpoint` / `load_checkpoint`: `torch.save` of the state dict, as the notebook did, and its
  vocabulary's word index as JSON (the notebook pickled the `Vocabulary`; this project saves no pickle).
  Only the benchmark writes these, into a temporary folder. `class_names` are stored as a list of strings
  (the notebook stored a numpy array) so that `torch.load(weights_only=True)` works.

Use hf-hybrid (`hf_hybrid`) for anything but comparisons.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NOTEBOOK_CLASS_WEIGHTS = {"cs.AI": 2.0}  # CLASS_WEIGHTS = [2.0, 1.0, 1.0, 1.0] with LabelEncoder's sorted classes
MAX_TITLE_LEN = 30
MAX_ABSTRACT_LEN = 200


# --------------------------------------------------------------------------------------------- model


class SelfAttention(nn.Module):
    def __init__(self, hidden_dim):
        super().__init__()
        self.attention = nn.Linear(hidden_dim, 1)

    def forward(self, lstm_output, mask=None):
        scores = self.attention(lstm_output).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention_weights = F.softmax(scores, dim=1)
        context = torch.bmm(attention_weights.unsqueeze(1), lstm_output).squeeze(1)
        return context, attention_weights


class GlobalAttention(nn.Module):
    def __init__(self, feature_dim):
        super().__init__()
        self.attention = nn.Linear(feature_dim, 1)

    def forward(self, cnn_features):
        features_t = cnn_features.transpose(1, 2)
        scores = self.attention(features_t).squeeze(-1)
        attention_weights = F.softmax(scores, dim=1)
        context = torch.bmm(attention_weights.unsqueeze(1), features_t).squeeze(1)
        return context, attention_weights


class WeightedAttentionFusion(nn.Module):
    def __init__(self, title_dim, abstract_dim):
        super().__init__()
        self.title_weight = nn.Linear(title_dim, 1)
        self.abstract_weight = nn.Linear(abstract_dim, 1)

    def forward(self, title_repr, abstract_repr):
        w_title = self.title_weight(title_repr)
        w_abstract = self.abstract_weight(abstract_repr)
        weights = torch.cat([w_title, w_abstract], dim=1)
        fusion_weights = F.softmax(weights, dim=1)
        weighted_title = title_repr * fusion_weights[:, 0:1]
        weighted_abstract = abstract_repr * fusion_weights[:, 1:2]
        fused = torch.cat([weighted_title, weighted_abstract], dim=1)
        return fused, fusion_weights


class HybridCNNLSTM(nn.Module):
    def __init__(
        self,
        vocab_size,
        embed_dim=300,
        num_filters=256,
        kernel_sizes=(3, 4, 5),
        lstm_hidden=256,
        num_classes=4,
        dropout=0.5,
        head_sizes=(512, 256),
    ):
        super().__init__()
        kernel_sizes = list(kernel_sizes)
        hidden1, hidden2 = head_sizes  # the notebook hard-coded 512 and 256

        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(dropout * 0.5)

        self.convs = nn.ModuleList([nn.Conv1d(embed_dim, num_filters, k, padding=k // 2) for k in kernel_sizes])
        self.conv_bn = nn.ModuleList([nn.BatchNorm1d(num_filters) for _ in kernel_sizes])
        total_filters = num_filters * len(kernel_sizes)
        self.cnn_attention = GlobalAttention(total_filters)

        self.lstm = nn.LSTM(
            embed_dim,
            lstm_hidden,
            num_layers=2,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if dropout > 0 else 0,
        )
        self.lstm_attention = SelfAttention(lstm_hidden * 2)

        self.fusion = WeightedAttentionFusion(lstm_hidden * 2, total_filters)

        fused_dim = lstm_hidden * 2 + total_filters
        self.classifier = nn.Sequential(
            nn.BatchNorm1d(fused_dim),
            nn.Dropout(dropout),
            nn.Linear(fused_dim, hidden1),
            nn.ReLU(),
            nn.BatchNorm1d(hidden1),
            nn.Dropout(dropout),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(),
            nn.BatchNorm1d(hidden2),
            nn.Dropout(dropout * 0.8),
            nn.Linear(hidden2, num_classes),
        )
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, title_ids, abstract_ids, title_mask=None):
        title_embed = self.embed_dropout(self.embedding(title_ids))
        lstm_out, _ = self.lstm(title_embed)
        title_repr, title_attn = self.lstm_attention(lstm_out, title_mask)

        abstract_embed = self.embed_dropout(self.embedding(abstract_ids)).transpose(1, 2)
        length = abstract_embed.shape[-1]
        conv_outputs = []
        for conv, bn in zip(self.convs, self.conv_bn):
            # THE FIX: padding=k//2 gives even widths one extra step; trim every output to the input length.
            x = F.relu(bn(conv(abstract_embed)[..., :length]))
            conv_outputs.append(x)
        cnn_features = torch.cat(conv_outputs, dim=1)
        abstract_repr, abstract_attn = self.cnn_attention(cnn_features)

        fused_repr, fusion_weights = self.fusion(title_repr, abstract_repr)
        logits = self.classifier(fused_repr)

        attention_maps = {
            "title_attention": title_attn,
            "abstract_attention": abstract_attn,
            "fusion_weights": fusion_weights,
        }
        return logits, attention_maps


# ------------------------------------------------------------------------------------- preprocessing


class Vocabulary:
    def __init__(self, max_vocab_size=50000, min_freq=2):
        self.max_vocab_size = max_vocab_size
        self.min_freq = min_freq
        self.word2idx = {"<PAD>": 0, "<UNK>": 1}
        self.idx2word = {0: "<PAD>", 1: "<UNK>"}
        self.word_counts = Counter()

    def build_vocab(self, texts):
        for text in texts:
            words = self.tokenize(text)
            self.word_counts.update(words)
        filtered_words = [word for word, count in self.word_counts.most_common() if count >= self.min_freq][
            : self.max_vocab_size - 2
        ]
        for idx, word in enumerate(filtered_words, start=2):
            self.word2idx[word] = idx
            self.idx2word[idx] = word

    @staticmethod
    def tokenize(text):
        text = text.lower()
        text = re.sub(r"[^a-z0-9\s\-]", " ", text)
        return [w.strip() for w in text.split() if w.strip()]

    def encode(self, text, max_len=None):
        words = self.tokenize(text)
        if max_len:
            words = words[:max_len]
        return [self.word2idx.get(word, 1) for word in words]

    def __len__(self):
        return len(self.word2idx)


class HybridDataset(Dataset):
    def __init__(
        self, titles, abstracts, labels, vocab, max_title_len=MAX_TITLE_LEN, max_abstract_len=MAX_ABSTRACT_LEN
    ):
        self.titles = titles
        self.abstracts = abstracts
        self.labels = labels
        self.vocab = vocab
        self.max_title_len = max_title_len
        self.max_abstract_len = max_abstract_len

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        title_ids = self.vocab.encode(self.titles[idx], self.max_title_len)
        title_len = len(title_ids)
        title_ids += [0] * (self.max_title_len - title_len)

        abstract_ids = self.vocab.encode(self.abstracts[idx], self.max_abstract_len)
        abstract_len = len(abstract_ids)
        abstract_ids += [0] * (self.max_abstract_len - abstract_len)

        title_mask = [1] * title_len + [0] * (self.max_title_len - title_len)

        return {
            "title_ids": torch.tensor(title_ids, dtype=torch.long),
            "abstract_ids": torch.tensor(abstract_ids, dtype=torch.long),
            "title_mask": torch.tensor(title_mask, dtype=torch.float),
            "label": torch.tensor(self.labels[idx], dtype=torch.long),
        }


def build_vocabulary(titles, abstracts, max_vocab_size=50000, min_freq=2):
    """As the notebook: one vocabulary over every title and every abstract."""
    vocab = Vocabulary(max_vocab_size=max_vocab_size, min_freq=min_freq)
    vocab.build_vocab(list(titles) + list(abstracts))
    return vocab


def make_loader(dataset, batch_size=64, shuffle=True, num_workers=2):
    # The notebook also passed pin_memory=True, which only matters (and only works) with a GPU.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


# ---------------------------------------------------------------------------------------- training


def class_weight_list(class_names):
    return [NOTEBOOK_CLASS_WEIGHTS.get(name, 1.0) for name in class_names]


def make_optimization(model, class_weights, lr=1e-3, weight_decay=1e-4):
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float))
    optimizer = optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return criterion, optimizer


def train_step(model, batch, criterion, optimizer, device="cpu"):
    """One iteration of the notebook's `train_epoch` loop body (without tqdm)."""
    title_ids = batch["title_ids"].to(device)
    abstract_ids = batch["abstract_ids"].to(device)
    title_mask = batch["title_mask"].to(device)
    labels = batch["label"].to(device)

    optimizer.zero_grad()
    logits, _ = model(title_ids, abstract_ids, title_mask)
    loss = criterion(logits, labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

    loss_value = loss.item()
    preds = torch.argmax(logits, dim=1).cpu().numpy()
    return loss_value, preds


# ------------------------------------------------------------------------------ saving / inference

CHECKPOINT_FILE = "best_hybrid_model.pth"
VOCAB_FILE = "vocab_hybrid.json"


def save_checkpoint(model, vocab, class_names, folder):
    """The notebook's `torch.save` of the state dict, into `folder` (a temporary folder: never commit these).

    The notebook pickled its `Vocabulary`; the project saves no pickle, so its word index goes to JSON.
    """
    torch.save(
        {
            "model_state_dict": model.state_dict(),
            "vocab_size": len(vocab),
            "class_names": list(class_names),
        },
        os.path.join(folder, CHECKPOINT_FILE),
    )
    with open(os.path.join(folder, VOCAB_FILE), "w") as f:
        json.dump(vocab.word2idx, f)


def load_checkpoint(folder, **model_kwargs):
    """`torch.load` (weights_only) of the state dict, the vocabulary, the model in eval mode."""
    checkpoint = torch.load(os.path.join(folder, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    vocab = Vocabulary()
    with open(os.path.join(folder, VOCAB_FILE)) as f:
        vocab.word2idx = json.load(f)
    vocab.idx2word = {index: word for word, index in vocab.word2idx.items()}
    model = HybridCNNLSTM(
        vocab_size=checkpoint["vocab_size"], num_classes=len(checkpoint["class_names"]), **model_kwargs
    )
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    return model, vocab, checkpoint["class_names"]


def encode_one(vocab, title, abstract, max_title_len=MAX_TITLE_LEN, max_abstract_len=MAX_ABSTRACT_LEN):
    """What `HybridDataset.__getitem__` does for one paper, as a batch of one."""
    item = HybridDataset([title], [abstract], [0], vocab, max_title_len, max_abstract_len)[0]
    return {key: item[key].unsqueeze(0) for key in ("title_ids", "abstract_ids", "title_mask")}


def predict_one(model, vocab, class_names, title, abstract):
    """The notebook's attention-visualisation cell: encode one paper, forward, argmax."""
    inputs = encode_one(vocab, title, abstract)
    with torch.no_grad():
        logits, _ = model(inputs["title_ids"], inputs["abstract_ids"], inputs["title_mask"])
        pred = torch.argmax(logits, dim=1).item()
    return class_names[pred]
