"""The results of a batch of papers, as the `arxiv-classification` pipeline gives them: `BulkClassifier` tokenizes
papers in one `tokenizers` call per field, classifies them in batches of papers of similar length and builds one
result per paper (`build_records`); `records_schema` is those results' Arrow schema, for Parquet output."""

from __future__ import annotations

import math
from itertools import chain

import numpy as np
import torch

from ..model.pipeline_arxiv_classification import decide_labels


def class_probabilities(logits: torch.Tensor, config) -> torch.Tensor:
    """Each label's probability from the model's (calibrated) scores: the one place that turns scores into
    probabilities for bulk results (each label's own sigmoid, for a multi-label model)."""
    return logits.float().sigmoid() if config.is_multi_label else logits.float().softmax(dim=-1)


def build_records(
    config,
    logits,
    fusion_weights,
    words: dict[str, list[list[dict]]],
    wide_logits=None,
    top_k: int | None = None,
    threshold: float | None = None,
    allow_empty: bool = False,
) -> list[dict]:
    """The results of a batch of papers, one dict each, as the `arxiv-classification` pipeline gives them.

    `logits` and `fusion_weights` are the model's outputs for the batch; `words` maps `title_words` and
    `abstract_words` to each paper's most attended words (see `BulkClassifier.top_words`).
    """
    probabilities = class_probabilities(logits, config)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    best = probabilities.argmax(dim=-1)
    best_scores = probabilities.gather(1, best.unsqueeze(1)).squeeze(1)
    if config.is_multi_label:
        thresholds = (
            [threshold] * len(labels) if threshold is not None else (config.label_thresholds or [0.5] * len(labels))
        )
        reached = decide_labels(probabilities, thresholds, allow_empty=True)
        chosen = decide_labels(probabilities, thresholds, allow_empty=allow_empty)
        order = torch.argsort(probabilities, dim=-1, descending=True).tolist()
        chosen, reached = chosen.tolist(), reached.any(dim=1).tolist()
        decisions = [
            {"labels": [labels[j] for j in ranking if chosen[i][j]], "needs_review": not reached[i]}
            for i, ranking in enumerate(order)
        ]
    else:
        below = (best_scores < threshold).tolist() if threshold is not None else None
        decisions = [
            {
                "label": None if below and below[i] else labels[index],
                "score": score,
                **({} if below is None else {"needs_review": below[i]}),
            }
            for i, (index, score) in enumerate(zip(best.tolist(), best_scores.tolist()))
        ]
    ranked = torch.argsort(probabilities, dim=-1, descending=True)[:, :top_k].tolist() if top_k else None
    branch = None
    if wide_logits is not None:
        wide = wide_logits.float()
        # The raw scores are the two branches' log-probabilities summed; `logits` divides them by the temperature.
        deep = logits.float() * config.calibration_temperature - wide
        branch = torch.stack(
            [class_probabilities(part, config).gather(1, best.unsqueeze(1)).squeeze(1) for part in (deep, wide)], dim=1
        ).tolist()
    rows = probabilities.tolist()
    fusion = fusion_weights.float().tolist()
    records = []
    for i, row in enumerate(rows):
        record = decisions[i]
        record["scores"] = dict(zip(labels, row))
        record["fusion_weights"] = {"title": fusion[i][0], "abstract": fusion[i][1]}
        record["title_words"] = words["title_words"][i]
        record["abstract_words"] = words["abstract_words"][i]
        if ranked is not None:
            record["top_labels"] = [{"label": labels[j], "score": row[j]} for j in ranked[i]]
        if branch is not None:
            record["branch_scores"] = {"deep": branch[i][0], "wide": branch[i][1]}
        records.append(record)
    return records


def records_schema(config, top_k: int | None, threshold: float | None, id_field=None):
    """The Arrow schema of `build_records`' results (Parquet output), with the id column first when given."""
    import pyarrow as pa

    word = pa.list_(pa.struct([("word", pa.string()), ("attention", pa.float64()), ("position", pa.int64())]))
    fields = [] if id_field is None else [id_field]
    if config.is_multi_label:
        fields += [("labels", pa.list_(pa.string())), ("needs_review", pa.bool_())]
    else:
        fields += [("label", pa.string()), ("score", pa.float64())]
        if threshold is not None:
            fields.append(("needs_review", pa.bool_()))
    fields += [
        ("scores", pa.struct([(config.id2label[i], pa.float64()) for i in range(config.num_labels)])),
        ("fusion_weights", pa.struct([("title", pa.float64()), ("abstract", pa.float64())])),
        ("title_words", word),
        ("abstract_words", word),
    ]
    if top_k:
        fields.append(("top_labels", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))))
    if config.wide_branch:
        fields.append(("branch_scores", pa.struct([("deep", pa.float64()), ("wide", pa.float64())])))
    return pa.schema(fields)


class BulkClassifier:
    """Classifies lists of papers with a loaded model and tokenizer: batched tokenization through the
    `tokenizers` backend, batches of papers of similar abstract length, vectorised top words.

    `classifier(titles, abstracts)` returns `build_records`' results in the order given.
    """

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 64,
        top_words: int = 5,
        top_k: int | None = None,
        threshold: float | None = None,
        allow_empty: bool = False,
    ):
        from tokenizers import Tokenizer

        self.model, self.tokenizer, self.config = model.eval(), tokenizer, model.config
        self.batch_size, self.top_k, self.threshold, self.allow_empty = batch_size, top_k, threshold, allow_empty
        self.top_words_count = top_words
        self.pad_id, self.unk_id = tokenizer.pad_token_id, tokenizer.unk_token_id
        self.backends = {}
        for field, length in (("title", tokenizer.max_title_length), ("abstract", tokenizer.max_abstract_length)):
            backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            backend.no_padding()
            backend.enable_truncation(max_length=length)
            self.backends[field] = backend
        vocab = tokenizer.backend_tokenizer.get_vocab()
        self.words_by_id = np.empty(len(vocab), dtype=object)
        for word, index in vocab.items():
            self.words_by_id[index] = word

    def encode(self, texts: list[str], field: str) -> tuple[np.ndarray, np.ndarray]:
        """Word ids of `texts`, right-padded to the longest (at most the field's maximum length), and lengths."""
        ids = [encoding.ids for encoding in self.backends[field].encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        padded = np.full((len(ids), int(lengths.max(initial=0))), self.pad_id, dtype=np.int64)
        padded[np.arange(padded.shape[1]) < lengths[:, None]] = np.fromiter(
            chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum())
        )
        return padded, lengths

    def top_words(self, texts: list[str], field: str, ids: np.ndarray, lengths: np.ndarray, attention) -> list:
        """Each paper's `top_words` most attended words of `field`, with their attention and position.

        Words come from the vocabulary by id; an out-of-vocabulary word is read from the paper's own words
        (`split_words`), as the pipeline reports it.
        """
        k = self.top_words_count
        if k == 0:
            return [[] for _ in texts]
        width = attention.shape[1]
        positions = torch.arange(width)
        lengths_t = torch.from_numpy(lengths)
        masked = attention.float().masked_fill(positions >= lengths_t[:, None], -math.inf)
        order = torch.argsort(masked, dim=-1, descending=True, stable=True)[:, :k]
        weights = masked.gather(1, order).tolist()
        order_np = order.numpy()
        chosen_ids = ids[np.arange(len(texts))[:, None], np.minimum(order_np, ids.shape[1] - 1)] if ids.size else None
        chosen_words = self.words_by_id[chosen_ids] if chosen_ids is not None else None
        results = []
        for i, length in enumerate(lengths.tolist()):
            count = min(k, length)
            if count == 0:
                results.append([])
                continue
            row_positions = order_np[i, :count].tolist()
            row_words = chosen_words[i, :count].tolist()
            if (chosen_ids[i, :count] == self.unk_id).any():
                own = self.tokenizer.split_words(texts[i], field)
                row_words = [own[p] for p in row_positions]
            results.append(
                [
                    {"word": w, "attention": a, "position": p}
                    for w, a, p in zip(row_words, weights[i][:count], row_positions)
                ]
            )
        return results

    @torch.inference_mode()
    def __call__(self, titles: list[str], abstracts: list[str]) -> list[dict]:
        if not titles:
            return []
        title_ids, title_lengths = self.encode(titles, "title")
        abstract_ids, abstract_lengths = self.encode(abstracts, "abstract")
        alone = np.flatnonzero((title_lengths > 0) & (abstract_lengths == 0)).tolist()
        if alone:  # a title without an abstract is read whole, as the tokenizer reads it
            titles, abstracts = list(titles), list(abstracts)
            for i in alone:
                titles[i], abstracts[i] = self.tokenizer.read_fields(titles[i], abstracts[i])
            title_ids, title_lengths = self.encode(titles, "title")
            abstract_ids, abstract_lengths = self.encode(abstracts, "abstract")
        # Papers of similar abstract length together: less padding for the convolutions.
        order = np.argsort(abstract_lengths, kind="stable")
        records: list[dict | None] = [None] * len(titles)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch_titles = [titles[i] for i in rows]
            batch_abstracts = [abstracts[i] for i in rows]
            inputs, lengths = {}, {}
            for field, ids, field_lengths in (
                ("title", title_ids, title_lengths),
                ("abstract", abstract_ids, abstract_lengths),
            ):
                lengths[field] = field_lengths[rows]
                width = int(lengths[field].max(initial=0))
                inputs[f"{field}_input_ids"] = torch.from_numpy(np.ascontiguousarray(ids[rows, :width]))
                inputs[f"{field}_attention_mask"] = inputs[f"{field}_input_ids"] != self.pad_id
            device = self.model.device
            outputs = self.model(**{name: value.to(device) for name, value in inputs.items()}, output_attentions=True)
            if device.type != "cpu":
                outputs = type(outputs)(**{name: value.cpu() for name, value in outputs.items()})
            words = {
                "title_words": self.top_words(
                    batch_titles, "title", inputs["title_input_ids"].numpy(), lengths["title"], outputs.title_attention
                ),
                "abstract_words": self.top_words(
                    batch_abstracts,
                    "abstract",
                    inputs["abstract_input_ids"].numpy(),
                    lengths["abstract"],
                    outputs.abstract_attention,
                ),
            }
            batch = build_records(
                self.config,
                outputs.logits,
                outputs.fusion_weights,
                words,
                outputs.wide_logits,
                top_k=self.top_k,
                threshold=self.threshold,
                allow_empty=self.allow_empty,
            )
            for row, record in zip(rows.tolist(), batch):
                records[row] = record
        return records
