"""Classify a file of papers: read in chunks, classified in batches, written chunk by chunk, in input order.

`classify_file` is what `hf-hybrid predict --input_file` runs. Memory stays bounded by `chunk_size` papers
whatever the size of the input: a chunk is read (CSV, JSON Lines or Parquet, through `pyarrow`'s streaming
readers), tokenized in one `tokenizers` call per field, classified in batches of papers of similar length,
and written before the next chunk is read.

Resuming: a JSON Lines output only ever grows by whole chunks, flushed; a Parquet output is a folder of part
files, each renamed into place whole. Started again with the same settings, a run keeps the complete lines
(parts) already written, drops a partial last line, and goes on with the first input row not yet written; a
settings file beside the output (`<output>.bulk.json`, or `_bulk.json` in a Parquet folder) says which
settings wrote it (the input's content and the model's among them, as digests), and a run with other settings is
refused. `overwrite` removes only what a bulk prediction wrote.

Shards: `num_shards=N, shard_index=I` classifies the input rows `i` with `i % N == I` (each process reads the
whole file, classifies its share); `merge_predictions` interleaves the shards' outputs back into the order of
a single run. `num_workers` runs that many shards on this machine, each in its own process, and merges them.

`classify_with_ray` runs the same classifier as a Ray Data `map_batches` stage (the `ray` extra).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, UserError
from .input_files import FORMATS, csv_delimiter, format_of_name, open_bytes, open_text, papers_format
from .model.configuration_hybrid_cnn_lstm import python_number
from .model.pipeline_arxiv_classification import decide_labels

logger = logging.getLogger(__name__)

CHUNK_SIZE = 4096
OUTPUT_FORMATS = ("jsonl", "parquet")
SETTINGS_SUFFIX = ".bulk.json"
PARQUET_SETTINGS = "_bulk.json"
PART_DIGITS = 12


# ------------------------------------------------------------------------------------------------ the results


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


# ------------------------------------------------------------------------------------------------ reading


def _csv_header(path: str) -> list[str]:
    import csv

    with open_text(path, errors="replace") as handle:
        return next(csv.reader(handle, delimiter=csv_delimiter(path)), [])


def _json_is_lines(path: str) -> bool:
    with open_text(path, errors="replace") as handle:
        while True:
            block = handle.read(4096)
            if not block:
                return True
            stripped = block.lstrip()
            if stripped:
                return not stripped.startswith("[")


def _first_json_row(path: str) -> dict:
    with open_text(path) as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise DataError(f"{path}: a JSON Lines file holds one object per line")
                return row
    raise DataError(f"{path}: has no rows")


def _source_batches(path: str, columns: list[str], id_column: str | None) -> Iterator:
    """The input's rows as pyarrow record batches of `columns` (texts as strings, the id as written)."""
    with _reading(path, columns, id_column):
        yield from _read_batches(path, columns, id_column)


@contextmanager
def _reading(path: str, columns: list[str], id_column: str | None = None):
    """Turns the errors of a file that cannot be read as its format (truncated, corrupt, a malformed row or line)
    into a `DataError` that says where."""
    import pyarrow as pa

    try:
        yield
    except UserError:
        raise
    except (pa.ArrowException, ValueError, OSError, EOFError) as error:  # EOFError: a truncated .gz
        fmt = papers_format(path)
        where = None
        with suppress(OSError, EOFError):
            where = _first_bad_json_line(path, columns, id_column) if fmt == "json" and _json_is_lines(path) else None
        cause = where or str(error).strip().splitlines()[0]
        damaged = "truncated or corrupt: " if fmt == "parquet" else ""
        raise DataError(
            f"{path}: cannot be read as {fmt.upper()} ({damaged}{cause}): fix the file or write it again"
        ) from error


def _first_bad_json_line(path: str, columns: list[str], id_column: str | None) -> str | None:
    """Where a JSON Lines file stops being one object per line with text columns (and ids of the first line's
    type): e.g. `line 6 is not JSON (...)`; None when every line is sound."""
    id_type = None
    with open_text(path, errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                return f"line {number} is not JSON: {error}"
            if not isinstance(row, dict):
                return f"line {number} is not a JSON object"
            for column in columns:
                value = row.get(column)
                if column == id_column:
                    kind = "a number" if isinstance(value, int) and not isinstance(value, bool) else "text"
                    if value is not None and id_type is not None and kind != id_type:
                        return f"line {number} has {kind} in {column}, the lines before it {id_type}"
                    id_type = id_type or (kind if value is not None else None)
                elif value is not None and not isinstance(value, str):
                    return f"line {number}: {column} holds {type(value).__name__}, not text"
    return None


def _read_batches(path: str, columns: list[str], id_column: str | None) -> Iterator:
    import pyarrow as pa

    fmt = papers_format(path)
    text_columns = [c for c in columns if c != id_column]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        reader = pq.ParquetFile(path)
        _check_columns(path, columns, reader.schema_arrow.names)
        yield from reader.iter_batches(batch_size=CHUNK_SIZE, columns=columns)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        _check_columns(path, columns, _csv_header(path))
        # Every cell as text, an empty one as "" (a title that reads "NA" or "null" is text).
        # One parsing thread: pyarrow then names the row of a malformed line (parsing is not the bound here).
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 22, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=csv_delimiter(path), newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns}
            ),
        )
        yield from reader
    elif not _json_is_lines(path):
        # A JSON array is one document: it is read whole (JSON Lines streams).
        with open_text(path) as handle:
            rows = json.load(handle)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DataError(f"{path}: a JSON file holds one object per line, or a list of objects")
        _check_columns(path, columns, sorted(set().union(*rows)) if rows else [])
        for start in range(0, len(rows), CHUNK_SIZE):
            part = rows[start : start + CHUNK_SIZE]
            yield pa.RecordBatch.from_pydict({c: [row.get(c) for row in part] for c in columns})
    else:
        import pyarrow.json as pjson

        first_row = _first_json_row(path)
        _check_columns(path, columns, list(first_row))
        fields = [(c, pa.string()) for c in text_columns]
        if id_column is not None:
            first = first_row.get(id_column)
            fields.append(
                (id_column, pa.int64() if isinstance(first, int) and not isinstance(first, bool) else pa.string())
            )
        reader = pjson.open_json(
            path,
            read_options=pjson.ReadOptions(block_size=1 << 22),
            parse_options=pjson.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"),
        )
        yield from (batch.select(columns) for batch in reader)


def _check_columns(path: str, wanted: list[str], present: list[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing and not present:
        raise DataError(f"{path}: is empty (no header, no rows)")
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(present) or 'none'}")


def count_rows(path: str) -> int:
    """How many papers `path` holds (Parquet: from its metadata; CSV and JSON: one pass over the file)."""
    fmt = papers_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with _reading(path, []):
            return pq.ParquetFile(path).metadata.num_rows
    if fmt == "json":
        with _reading(path, []):
            if not _json_is_lines(path):
                with open_text(path) as handle:
                    return len(json.load(handle))
            with open_bytes(path) as handle:
                return sum(bool(line.strip()) for line in handle)
    header = _csv_header(path)
    return sum(len(batch) for batch in _source_batches(path, header[:1], None)) if header else 0


def read_chunks(
    path: str,
    columns: list[str],
    id_column: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    skip: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
) -> Iterator:
    """The rows of this shard (input rows `i` with `i % num_shards == shard_index`) after its first `skip`, as
    pyarrow tables of `chunk_size` rows (the last one shorter), in input order."""
    import pyarrow as pa

    seen = 0  # input rows read so far
    taken = 0  # shard rows met so far
    pending, pending_rows = [], 0
    for batch in _source_batches(path, columns, id_column):
        rows = np.arange(seen, seen + len(batch))
        seen += len(batch)
        mine = np.flatnonzero(rows % num_shards == shard_index)
        drop = min(max(skip - taken, 0), len(mine))
        taken += len(mine)
        mine = mine[drop:]
        if not len(mine):
            continue
        pending.append(batch.take(pa.array(mine)))
        pending_rows += len(mine)
        while pending_rows >= chunk_size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            pending, pending_rows = rest.to_batches(), len(rest)
    if pending_rows:
        yield pa.Table.from_batches(pending)
    if seen == 0:
        raise DataError(f"{path}: has no rows")


def _texts(table, column: str, source: str) -> list[str]:
    import pyarrow as pa

    values = table.column(column)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        try:
            values = values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataError(
                f"{source}: column {column} ({values.type}) should hold text, one value per paper"
            ) from error
    return [text or "" for text in values.to_pylist()]


# ------------------------------------------------------------------------------------------------ writing


@dataclass
class BulkSettings:
    """What decides an output's content: a run that resumes it must have the same."""

    input_file: str
    model: str
    revision: str | None
    title_column: str
    abstract_column: str
    id_column: str | None
    top_words: int
    top_k: int | None
    threshold: float | None
    fold: str | None
    output_format: str
    num_shards: int
    shard_index: int
    allow_empty: bool = False
    # `model_fingerprint` of the model (None: not yet known; `classify_file` computes it).
    model_sha256: str | None = None
    # `file_sha256` of the input: an output goes on only from the same content (None: `classify_file` computes it).
    input_sha256: str | None = None

    def __post_init__(self):
        # Settings built in Python may hold NumPy or PyTorch scalars, which the settings file (JSON) cannot hold.
        for name in ("top_words", "top_k", "threshold", "num_shards", "shard_index", "allow_empty"):
            setattr(self, name, python_number(getattr(self, name)))


def file_sha256(path: str) -> str:
    """A digest of a file's bytes (about a second for a 100,000-paper CSV)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()[:16]


def settings_path(output: Path, output_format: str) -> Path:
    return output / PARQUET_SETTINGS if output_format == "parquet" else output.with_name(output.name + SETTINGS_SUFFIX)


class JsonLinesOutput:
    """A JSON Lines file that grows by whole chunks; reopened, it keeps its complete lines (a partial last one,
    from a run killed while writing, is cut off)."""

    def __init__(self, path: Path):
        self.path = path

    def written(self) -> int:
        if not self.path.exists():
            return 0
        count, end = 0, 0
        with open(self.path, "rb") as handle:
            position = 0
            while block := handle.read(1 << 24):
                newlines = block.count(b"\n")
                if newlines:
                    count += newlines
                    end = position + block.rindex(b"\n") + 1
                position += len(block)
        if end != self.path.stat().st_size:
            os.truncate(self.path, end)
        return count

    def open(self, start: int) -> None:
        self.handle = open(self.path, "ab" if start else "wb")

    def write(self, records: list[dict], ids, start: int) -> None:
        self.handle.write(_json_lines(records, ids))
        self.handle.flush()

    def finish(self) -> None:
        self.handle.close()


class ParquetOutput:
    """A folder of Parquet part files, `part-<first row>.parquet`, each complete or absent: a part is written
    under a temporary name and renamed into place."""

    def __init__(self, path: Path, schema):
        self.path, self.schema = path, schema

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def written(self) -> int:
        import pyarrow.parquet as pq

        if not self.path.exists():
            return 0
        for stray in self.path.glob("part-*.parquet.tmp"):
            stray.unlink()
        total = 0
        for part in self.parts():
            if part.name != _part_name(total):
                raise UserError(
                    f"{self.path}: part files are not contiguous ({part.name} after {total} rows); "
                    "delete the folder and start again"
                )
            total += pq.read_metadata(part).num_rows
        return total

    def open(self, start: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, records: list[dict], ids, start: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(_with_ids(records, ids), schema=self.schema)
        final = self.path / _part_name(start)
        temporary = final.with_name(final.name + ".tmp")
        pq.write_table(table, temporary)
        os.replace(temporary, final)

    def finish(self) -> None:
        pass


class StreamOutput:
    """JSON Lines on a stream (stdout): nothing to resume."""

    def __init__(self, stream):
        self.stream = stream

    def written(self) -> int:
        return 0

    def open(self, start: int) -> None:
        pass

    def write(self, records, ids, start) -> None:
        self.stream.buffer.write(_json_lines(records, ids)) if hasattr(self.stream, "buffer") else self.stream.write(
            _json_lines(records, ids).decode()
        )
        self.stream.flush()

    def finish(self) -> None:
        pass


def _part_name(start: int) -> str:
    return f"part-{start:0{PART_DIGITS}d}.parquet"


def _with_ids(records: list[dict], ids) -> list[dict]:
    if ids is None:
        return records
    name, values = ids
    return [{name: value, **record} for value, record in zip(values, records)]


def _json_lines(records: list[dict], ids) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in _with_ids(records, ids)).encode()


# ------------------------------------------------------------------------------------------------ checks


def check_request(
    input_file: str,
    columns: list[str],
    output_file: str | None,
    output_format: str,
    id_column: str | None = None,
) -> None:
    """Refuses, before a model is loaded or anything written, an input that cannot be classified (unknown
    format, missing, unreadable, without the columns or without rows) and an output that would destroy the input
    or whose name says another format."""
    papers_format(input_file)
    if output_file is not None:
        check_output_path(input_file, output_file, output_format)
    batches = _source_batches(input_file, columns, id_column)
    try:
        if not any(len(batch) for batch in batches):  # the first batch, unless it is empty
            raise DataError(f"{input_file}: has no rows")
    finally:
        batches.close()


# An output whose name says another format than it holds: {format: (what it is, suffixes refused, its suffix)}.
WRONG_SUFFIXES = {
    "jsonl": ("JSON Lines", {".parquet", ".csv", ".tsv"}, ".jsonl"),
    "parquet": ("a folder of Parquet part files", {".jsonl", ".json", ".csv", ".tsv"}, ".parquet"),
}


def check_output_path(input_file: str | None, output_file: str, output_format: str) -> None:
    """Refuses an output named for another format than `output_format` (`input_file` None: a merge, whose format
    is its shards'), or one that would replace `input_file`."""
    output = Path(output_file)
    written, suffixes, suffix = WRONG_SUFFIXES[output_format]
    if output.suffix.lower() in suffixes:
        other = next(name for name in OUTPUT_FORMATS if name != output_format)
        advice = f"name it {suffix}" + ("" if input_file is None else f", or give --output_format {other}")
        what = "the shards are" if input_file is None else f"--output_format {output_format} writes"
        raise UserError(f"--output_file {output_file}: {what} {written}, not {output.suffix}: {advice}")
    if input_file is not None:
        source, target = Path(input_file).resolve(), output.resolve()
        if source == target or output_format == "parquet" and source.is_relative_to(target):
            raise UserError(
                f"--output_file {output_file} would replace the input file {input_file}: choose another --output_file"
            )


def model_fingerprint(model, tokenizer) -> str:
    """A digest of what decides a model's results: its weights, its config (but where it was loaded from) and its
    tokenizer. A bulk output records it, so that it is not continued with another model saved under the same name."""
    import hashlib

    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(f"{tokenizer.max_title_length} {tokenizer.max_abstract_length}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ one file


def describe_fold(model) -> str:
    folded = model.hybrid._folded_encoders
    return f"{folded.num_bytes / 1e6:.0f} MB of {str(folded.dtype).removeprefix('torch.')} tables"


def classify_file(
    model,
    tokenizer,
    settings: BulkSettings,
    output_file: str | None = None,
    batch_size: int = 64,
    chunk_size: int = CHUNK_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    progress_queue=None,
) -> int:
    """Classifies `settings.input_file` (this shard of it) into `output_file` (stdout when None); returns how
    many papers this run classified. A complete output is left as it is; a partial one is continued."""
    from tqdm.auto import tqdm

    source = settings.input_file
    columns = [settings.title_column, settings.abstract_column]
    if settings.id_column is not None:
        if settings.id_column in columns:
            raise UserError(f"--id_column {settings.id_column} is also a text column")
        reserved = set(records_schema(model.config, settings.top_k, settings.threshold).names)
        if settings.id_column in reserved:
            raise UserError(f"--id_column {settings.id_column}: results have a field of that name; rename the column")
        columns.append(settings.id_column)
    check_shard(settings)
    if output_file is not None:
        check_output_path(source, output_file, settings.output_format)
    if settings.model_sha256 is None:
        settings = replace(settings, model_sha256=model_fingerprint(model, tokenizer))
    if settings.input_sha256 is None:
        settings = replace(settings, input_sha256=file_sha256(source))
    all_rows = count_rows(source)  # before anything is written: an input of no rows is refused
    if all_rows == 0:
        raise DataError(f"{source}: has no rows")

    id_field = None
    if output_file is None:
        if settings.output_format != "jsonl":
            raise UserError("--output_format parquet needs --output_file (a folder)")
        output = StreamOutput(sys.stdout)
        done = 0
    else:
        path = Path(output_file)
        if settings.output_format == "parquet":
            output = ParquetOutput(path, None)
        else:
            output = JsonLinesOutput(path)
        done = _check_resume(path, settings, overwrite)

    total = _shard_rows(all_rows, settings.num_shards, settings.shard_index)
    if output_file is not None and done >= total and _finished(path, settings):
        logger.info("%s is complete (%d papers)", output_file, done)
        return 0
    if done > total:
        raise UserError(
            f"{output_file} has {done} results but this shard of {source} has {total} papers: "
            "the input changed; delete the output and start again"
        )
    if done:
        logger.info("%s: %d of %d papers already classified; going on", output_file, done, total)

    classify = BulkClassifier(
        model,
        tokenizer,
        batch_size=batch_size,
        top_words=settings.top_words,
        top_k=settings.top_k,
        threshold=settings.threshold,
        allow_empty=settings.allow_empty,
    )
    output.open(done)
    bar = tqdm(
        total=total,
        initial=done,
        unit="papers",
        desc="Predicting",
        disable=not progress or total < 100,
        smoothing=0.1,
        dynamic_ncols=True,
    )
    start, classified = done, 0
    try:
        for table in read_chunks(
            source,
            columns,
            settings.id_column,
            chunk_size,
            skip=done,
            num_shards=settings.num_shards,
            shard_index=settings.shard_index,
        ):
            records = classify(
                _texts(table, settings.title_column, source), _texts(table, settings.abstract_column, source)
            )
            ids = None
            if settings.id_column is not None:
                values = table.column(settings.id_column)
                ids = (settings.id_column, values.to_pylist())
                if settings.output_format == "parquet" and output.schema is None:
                    id_field = (settings.id_column, values.type)
            if settings.output_format == "parquet" and output.schema is None:
                output.schema = records_schema(model.config, settings.top_k, settings.threshold, id_field)
            output.write(records, ids, start)
            start += len(records)
            classified += len(records)
            bar.update(len(records))
            if progress_queue is not None:
                progress_queue.put(len(records))
    finally:
        bar.close()
        output.finish()
    if output_file is not None:
        _write_settings(path, settings, finished=True)
    return classified


def check_shard(settings: BulkSettings) -> None:
    if not 0 <= settings.shard_index < settings.num_shards:
        raise UserError(
            f"--shard_index {settings.shard_index} is out of range for --num_shards "
            f"{settings.num_shards} (0 to {settings.num_shards - 1})"
        )


def _shard_rows(total: int, num_shards: int, shard_index: int) -> int:
    return max(0, -(-(total - shard_index) // num_shards))


# How a difference of settings is named in an error line, where the field's name alone would not say it.
CHANGED = {
    "model_sha256": "model_sha256 (the model's weights, config or tokenizer)",
    "input_sha256": "input_sha256 (the input file's content)",
}


def _check_resume(path: Path, settings: BulkSettings, overwrite: bool) -> int:
    """How many results `path` already holds for `settings` (0 for a new output); refuses other settings."""
    if overwrite:
        remove_output(path, settings.output_format)
    elif path.is_file() or path.is_dir() and any(path.iterdir()):  # an empty folder is a new Parquet output
        check_same_settings(path, settings)
        output = ParquetOutput(path, None) if settings.output_format == "parquet" else JsonLinesOutput(path)
        return output.written()
    _check_output_kind(path, settings.output_format)
    _write_settings(path, settings, finished=False)
    return 0


def _check_output_kind(path: Path, output_format: str) -> None:
    if output_format == "parquet" and path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file: --output_format parquet writes a folder of part files")
    if output_format == "jsonl" and path.is_dir():
        raise UserError(f"{path} is a folder: JSON Lines output is one file (or --output_format parquet)")


def check_same_settings(path: Path, settings: BulkSettings, name: Path | str | None = None) -> None:
    """Refuses to go on with the output at `path` (called `name` in the error) under other settings than those that
    started it, naming each one changed; and an output that a bulk prediction did not write."""
    _check_output_kind(path, settings.output_format)
    recorded = settings_path(path, settings.output_format)
    if not recorded.exists():
        raise UserError(
            f"{path} exists and was not written by a bulk prediction (no {recorded.name}); "
            "delete it, choose another --output_file, or give --overwrite"
        )
    before = _read_settings(recorded)
    before.pop("finished", None)
    differences = [
        f"{CHANGED.get(key, key)} {before.get(key)!r} -> {value!r}"
        for key, value in asdict(settings).items()
        if before.get(key) != value and not (key in CHANGED and value is None)  # a digest not yet known
    ]
    if differences:
        raise UserError(
            f"{name or path} was written with other settings ({'; '.join(differences)}): resume it with "
            "the same command, choose another --output_file, or give --overwrite"
        )


def remove_output(path: Path, output_format: str) -> None:
    """Removes what a bulk prediction wrote at `path` (`--overwrite`): a JSON Lines file, or a Parquet folder's
    part files, and its settings file. A folder that a bulk prediction did not write is refused, and files of
    others in one it wrote stay."""
    _check_output_kind(path, output_format)
    recorded = settings_path(path, output_format)
    if path.is_dir():
        if not recorded.exists() and any(path.iterdir()):
            raise UserError(
                f"{path} is a folder that a bulk prediction did not write (no {recorded.name}): --overwrite "
                "removes only the files of a bulk output; choose another --output_file"
            )
        for part in [*path.glob("part-*.parquet"), *path.glob("part-*.parquet.tmp")]:
            part.unlink()
    else:
        path.unlink(missing_ok=True)
    recorded.unlink(missing_ok=True)


def _read_settings(recorded: Path) -> dict:
    """The settings recorded beside an output, with `finished`; one that is not what hf-hybrid wrote is refused."""
    try:
        values = json.loads(recorded.read_text())
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        BulkSettings(**{key: value for key, value in values.items() if key != "finished"})
    except (ValueError, TypeError) as error:
        raise UserError(
            f"{recorded} is not a settings file of hf-hybrid ({error}): run the command that wrote the output again "
            "with --overwrite"
        ) from error
    return values


def _write_settings(path: Path, settings: BulkSettings, finished: bool) -> None:
    recorded = settings_path(path, settings.output_format)
    recorded.parent.mkdir(parents=True, exist_ok=True)
    temporary = recorded.with_name(recorded.name + ".tmp")
    temporary.write_text(json.dumps({**asdict(settings), "finished": finished}, indent=2) + "\n")
    os.replace(temporary, recorded)


def _finished(path: Path, settings: BulkSettings) -> bool:
    recorded = settings_path(path, settings.output_format)
    return recorded.exists() and _read_settings(recorded).get("finished", False)


# ------------------------------------------------------------------------------------------------ shards


def merge_predictions(inputs: list[str], output_file: str, chunk_size: int = CHUNK_SIZE) -> Path:
    """Interleaves the outputs of the shards of one input (each complete) into the output a single run gives.

    The shards are `num_shards=M` outputs whose indices are `I, I + N, ..., I + N * (W - 1)` for `W = len(inputs)`
    shards and `N = M / W` (all M shards of the input: `N = 1`, `I = 0`); the merged output is then shard `I` of `N`,
    settings file included. JSON Lines merge into one file, Parquet folders into one folder of `chunk_size`-row
    parts, in any order given.
    """
    if not inputs:
        raise UserError("give the shards' outputs to merge")
    shards = []
    for name in inputs:
        path = Path(name)
        recorded = settings_path(path, "parquet" if path.is_dir() else "jsonl")
        if not recorded.exists():
            raise UserError(f"{name}: no {recorded.name} beside it: not the output of a bulk prediction")
        values = _read_settings(recorded)
        if not values.pop("finished", False):
            raise UserError(f"{name} is not complete: run its command again to finish it, then merge")
        shards.append((BulkSettings(**values), path))
    shards.sort(key=lambda shard: shard[0].shard_index)
    first = shards[0][0]
    common = {key: value for key, value in asdict(first).items() if key != "shard_index"}
    for settings, path in shards[1:]:
        other = {key: value for key, value in asdict(settings).items() if key != "shard_index"}
        if other != common:
            differences = [key for key in common if common[key] != other[key]]
            raise UserError(f"{path} was written with other settings than {shards[0][1]} ({', '.join(differences)})")
    count, total_shards = len(shards), first.num_shards
    step = total_shards // count
    indices = [settings.shard_index for settings, _ in shards]
    for (settings, path), (later, again) in zip(shards, shards[1:]):
        if settings.shard_index == later.shard_index:
            raise UserError(
                f"shard {settings.shard_index} of {total_shards} is given twice ({path}, {again}): give each shard once"
            )
    if total_shards % count or indices != [indices[0] + step * w for w in range(count)] or indices[0] >= step:
        raise UserError(
            f"shards {indices} of {total_shards} do not make a whole: give all {total_shards} shards "
            "(or every one of a shard's own shards)"
        )
    merged = BulkSettings(**{**common, "num_shards": step, "shard_index": indices[0]})
    check_output_path(None, output_file, first.output_format)
    output = Path(output_file)
    if output.exists():
        raise UserError(f"{output} exists: choose another --output_file or delete it")
    if first.output_format == "parquet":
        _merge_parquet([path for _, path in shards], output, chunk_size)
    else:
        _merge_json_lines([path for _, path in shards], output)
    _write_settings(output, merged, finished=True)
    return output


def _merge_json_lines(paths: list[Path], output: Path) -> None:
    handles = [open(path, "rb") for path in paths]
    try:
        temporary = output.with_name(output.name + ".tmp")
        with open(temporary, "wb") as merged:
            exhausted = False
            while not exhausted:
                for shard, handle in enumerate(handles):
                    line = handle.readline()
                    if not line:
                        exhausted = True
                        if any(other.readline() for other in handles[shard:]):
                            raise UserError(
                                f"{paths[shard]} has fewer results than the shards before it and "
                                "more than those after: these are not shards of one input"
                            )
                        break
                    merged.write(line)
        os.replace(temporary, output)
    finally:
        for handle in handles:
            handle.close()


def _merge_parquet(paths: list[Path], output: Path, chunk_size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    class Rows:
        def __init__(self, folder):
            self.parts = iter(sorted(folder.glob("part-*.parquet")))
            self.pending = None

        def take(self, n):
            pieces = []
            while n:
                if self.pending is None or not len(self.pending):
                    part = next(self.parts, None)
                    if part is None:
                        break
                    self.pending = pq.read_table(part)
                piece = self.pending.slice(0, n)
                self.pending = self.pending.slice(len(piece))
                pieces.append(piece)
                n -= len(piece)
            return pa.concat_tables(pieces) if pieces else None

    counts = [sum(pq.read_metadata(part).num_rows for part in path.glob("part-*.parquet")) for path in paths]
    count, total = len(paths), sum(counts)
    if counts != [_shard_rows(total, count, s) for s in range(count)]:
        raise UserError(f"the shards hold {counts} results: these are not shards of one input")
    readers = [Rows(path) for path in paths]
    output.mkdir(parents=True)
    for start in range(0, total, chunk_size):
        end = min(start + chunk_size, total)
        positions = np.arange(start, end)
        shard_of = positions % count
        firsts = start + (np.arange(count) - start) % count
        wanted = [int((shard_of == s).sum()) for s in range(count)]
        tables = [reader.take(n) for reader, n in zip(readers, wanted)]
        offsets = np.concatenate([[0], np.cumsum(wanted)[:-1]])
        index = offsets[shard_of] + (positions - firsts[shard_of]) // count
        block = pa.concat_tables([table for table in tables if table is not None]).take(pa.array(index))
        final = output / _part_name(start)
        pq.write_table(block, final.with_name(final.name + ".tmp"))
        os.replace(final.with_name(final.name + ".tmp"), final)


# ------------------------------------------------------------------------------------------------ workers


def _worker(
    model: str,
    revision,
    settings: dict,
    output_file: str,
    batch_size: int,
    chunk_size: int,
    threads: int,
    progress_queue,
    device: str = "cpu",
) -> None:
    """One worker process of `classify_with_workers`: loads the model onto `device` (folded if the settings say so),
    classifies its shard. Puts the number of papers of each chunk written on `progress_queue`, and a user's error as
    its one line (text)."""
    torch.set_num_threads(threads)
    from .cli import load_trained

    try:
        tokenizer, classifier = load_trained(model, revision)
        classifier.to(device)
        if settings["fold"]:
            classifier.fold_for_inference(settings["fold"])
        classify_file(
            classifier,
            tokenizer,
            BulkSettings(**settings),
            output_file,
            batch_size=batch_size,
            chunk_size=chunk_size,
            progress=False,
            progress_queue=progress_queue,
        )
    except (UserError, OSError) as error:  # what the command would say in one line: the parent says it
        progress_queue.put(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
        sys.exit(1)


def classify_with_workers(
    settings: BulkSettings,
    output_file: str,
    num_workers: int,
    batch_size: int = 64,
    chunk_size: int = CHUNK_SIZE,
    overwrite: bool = False,
    device: str = "cpu",
) -> None:
    """`classify_file` in `num_workers` processes on this machine, each with its own model (on `device`) and its
    share of the CPU threads, each writing a shard under `<output_file>.workers/`, merged into `output_file` at the
    end. Killed, the same call goes on with every worker's shard where it stopped; with other settings, it is refused
    before any worker starts."""
    import multiprocessing

    from tqdm.auto import tqdm

    check_shard(settings)
    check_output_path(settings.input_file, output_file, settings.output_format)
    if settings.input_sha256 is None:
        settings = replace(settings, input_sha256=file_sha256(settings.input_file))
    output = Path(output_file)
    workers_dir = output.with_name(output.name + ".workers")
    suffix = ".jsonl" if settings.output_format == "jsonl" else ""
    shard_settings, shard_files = [], []
    for w in range(num_workers):
        shard_settings.append(
            replace(
                settings,
                num_shards=settings.num_shards * num_workers,
                shard_index=settings.shard_index + settings.num_shards * w,
            )
        )
        shard_files.append(workers_dir / f"shard-{w:03d}-of-{num_workers:03d}{suffix}")
    if overwrite:
        remove_output(output, settings.output_format)
        _remove_worker_shards(workers_dir, settings.output_format)
    if output.exists():
        if _finished(output, settings) and _check_resume(output, settings, overwrite=False) >= 0:
            logger.info("%s is complete", output)
            return
        raise UserError(f"{output} exists: choose another --output_file or give --overwrite")
    for values, path in zip(shard_settings, shard_files):
        if path.exists():  # a killed run's shard: going on with other settings would mix two runs' results
            check_same_settings(path, values, name=output)
    workers_dir.mkdir(parents=True, exist_ok=True)
    total = _shard_rows(count_rows(settings.input_file), settings.num_shards, settings.shard_index)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // num_workers)
    processes = [
        context.Process(
            target=_worker,
            args=(
                settings.model,
                settings.revision,
                asdict(values),
                str(path),
                batch_size,
                chunk_size,
                threads,
                queue,
                device,
            ),
        )
        for values, path in zip(shard_settings, shard_files)
    ]
    for process in processes:
        process.start()
    done, errors = 0, []
    with tqdm(total=total, unit="papers", desc="Predicting", smoothing=0.1, dynamic_ncols=True) as bar:
        while any(process.is_alive() for process in processes) or not queue.empty():
            try:
                message = queue.get(timeout=0.5)
            except Exception:  # queue.Empty
                continue
            if isinstance(message, str):
                errors.append(message)
                continue
            done += message
            bar.update(message)
    for process in processes:
        process.join()
    if errors:
        raise UserError(errors[0])
    failed = [w for w, process in enumerate(processes) if process.exitcode != 0]
    if failed:
        raise UserError(f"worker(s) {failed} failed (see above); run the same command again to go on")
    merge_predictions([str(path) for path in shard_files], output_file, chunk_size)
    _remove_worker_shards(workers_dir, settings.output_format)


def _remove_worker_shards(workers_dir: Path, output_format: str) -> None:
    """Removes the workers' shard outputs (of any number of workers) and their folder, unless it holds others'."""
    if not workers_dir.is_dir():
        return
    for shard in workers_dir.glob("shard-*-of-*"):
        if not shard.name.endswith(SETTINGS_SUFFIX) and settings_path(shard, output_format).exists():
            remove_output(shard, output_format)
            if shard.is_dir() and not any(shard.iterdir()):
                shard.rmdir()
    if not any(workers_dir.iterdir()):
        workers_dir.rmdir()


# ------------------------------------------------------------------------------------------------ Ray Data


def _json_lines_datasink(path: str):
    """A Ray Data datasink that writes results as `classify_file` does (`_json_lines`); Ray's `write_json` goes
    through pandas, which rounds floats to 10 digits and escapes "/" in ids such as cs/0701001."""
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        def write_block_to_file(self, block, file):
            file.write(_json_lines(block.to_arrow().to_pylist(), None))

    return JsonLinesDatasink(path, file_format="json")


def _users_error(error, paths: list[str], columns: list[str], id_column: str | None) -> UserError | None:
    """What the user did wrong when a Ray task failed: the error `classify_file` gives a local input that cannot
    be read or classified (naming its row or line), or a `UserError` raised in a worker; None for anything else (a
    bug, whose traceback is for the report)."""
    import ray

    for path in paths:
        if Path(path).is_file():
            try:
                for batch in _source_batches(path, columns, id_column):
                    for text_column in columns[:2]:
                        _texts(batch, text_column, path)
            except DataError as found:
                return found
    cause = error
    while isinstance(cause, ray.exceptions.RayTaskError):  # a task's error, which is also its cause's type
        cause = cause.cause
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__
    return cause


class RayClassifier:
    """The `map_batches` stage of `classify_with_ray`: one loaded (folded) model per Ray worker, classifying
    pyarrow batches into tables of `build_records`' results (the id column first when given)."""

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        fold: str | None = "float32",
        batch_size: int = 64,
        top_words: int = 5,
        top_k: int | None = None,
        threshold: float | None = None,
        allow_empty: bool = False,
        title_column: str = "title",
        abstract_column: str = "abstract",
        id_column: str | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ):
        if threads:
            torch.set_num_threads(threads)
        from .cli import load_trained
        from .model.handler import select_device

        tokenizer, classifier = load_trained(model, revision)
        classifier.to(select_device(device))
        if fold and classifier.device.type == "cpu":
            classifier.fold_for_inference(fold)
        self.config, self.top_k, self.threshold = classifier.config, top_k, threshold
        self.columns = (title_column, abstract_column, id_column)
        self.classify = BulkClassifier(
            classifier,
            tokenizer,
            batch_size=batch_size,
            top_words=top_words,
            top_k=top_k,
            threshold=threshold,
            allow_empty=allow_empty,
        )

    def __call__(self, batch):
        import pyarrow as pa

        title_column, abstract_column, id_column = self.columns
        records = self.classify(_texts(batch, title_column, "input"), _texts(batch, abstract_column, "input"))
        ids, id_field = None, None
        if id_column is not None:
            ids, id_field = (id_column, batch.column(id_column).to_pylist()), (id_column, batch.column(id_column).type)
        return pa.Table.from_pylist(
            _with_ids(records, ids), schema=records_schema(self.config, self.top_k, self.threshold, id_field)
        )


def classify_with_ray(
    input_path: str | list[str],
    output_path: str,
    model: str,
    *,
    revision: str | None = None,
    output_format: str = "parquet",
    concurrency: int | tuple[int, int] = 1,
    num_cpus_per_worker: float = 1,
    batch_size: int = 64,
    chunk_size: int = CHUNK_SIZE,
    top_words: int = 5,
    top_k: int | None = None,
    threshold: float | None = None,
    allow_empty: bool = False,
    title_column: str = "title",
    abstract_column: str = "abstract",
    id_column: str | None = None,
    fold: str | None = "float32",
    address: str | None = None,
    device: str = "cpu",
):
    """Classifies files of papers (Parquet, CSV or JSON Lines, read with Ray Data's own readers) on a Ray cluster
    into `output_path` (a folder of Parquet or JSON Lines files, written by Ray Data), in input order.

    Each of `concurrency` Ray workers (an int, or `(min, max)` for an autoscaling pool) holds one loaded, folded
    model and `num_cpus_per_worker` CPUs (leave the cluster a CPU beside them for Ray Data's read and write
    tasks, or the pipeline waits for one); `chunk_size` papers go to a worker at a time, in batches of
    `batch_size`. `address` is the cluster (`"ray://head:10001"`, `"auto"`); without it, an already started Ray or
    a new local one. `model` must be readable from every worker: a Hub repo id, or a folder every node has. `device`
    is where each worker runs its model (`cpu`, `cuda`: one GPU each, unfolded, or `auto`), resolved on the worker.
    Returns the Ray `Dataset` of the results.

    The id column keeps its type and text (a CSV's ids are text, `0704.0010` as written), and JSON Lines are
    written as `classify_file` writes them. A file that cannot be read, or a user's error in a worker, is one line
    (`DataError`, `UserError`), as in a single process.
    """
    batch_size, chunk_size, top_words, top_k, threshold, concurrency, num_cpus_per_worker = (
        python_number(value) if not isinstance(value, tuple) else tuple(map(python_number, value))
        for value in (batch_size, chunk_size, top_words, top_k, threshold, concurrency, num_cpus_per_worker)
    )
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.json as pjson
        import ray
    except ImportError as error:
        raise ImportError("classify_with_ray needs Ray Data: pip install 'hf-hybrid[ray]'") from error
    if output_format not in OUTPUT_FORMATS:
        raise UserError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if not ray.is_initialized():
        ray.init(address=address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    paths = [input_path] if isinstance(input_path, str) else list(input_path)
    formats = {format_of_name(path) for path in paths}
    if len(formats) != 1 or None in formats:
        raise DataError(f"{input_path}: give files of one format: {', '.join(sorted(FORMATS))}")
    fmt = formats.pop()
    texts = {title_column: pa.string(), abstract_column: pa.string()}
    columns = [*texts, *([id_column] if id_column else [])]
    if fmt == "parquet":
        dataset = ray.data.read_parquet(paths).select_columns(columns)
    elif fmt == "csv":
        # Every column read as text, as `classify_file` reads it: an id such as 0704.0010 is not a number.
        dataset = ray.data.read_csv(
            paths,
            convert_options=pcsv.ConvertOptions(column_types={column: pa.string() for column in columns}),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
        )
    else:
        dataset = ray.data.read_json(
            paths,
            parse_options=pjson.ParseOptions(
                explicit_schema=pa.schema(list(texts.items())), unexpected_field_behavior="infer"
            ),
        )
    results = dataset.map_batches(
        RayClassifier,
        batch_format="pyarrow",
        batch_size=chunk_size,
        concurrency=concurrency,
        num_cpus=num_cpus_per_worker,
        num_gpus=1 if device.startswith("cuda") else 0,
        fn_constructor_kwargs=dict(
            model=model,
            revision=revision,
            fold=fold,
            batch_size=batch_size,
            top_words=top_words,
            top_k=top_k,
            threshold=threshold,
            allow_empty=allow_empty,
            title_column=title_column,
            abstract_column=abstract_column,
            id_column=id_column,
            threads=max(1, int(num_cpus_per_worker)),
            device=device,
        ),
    )
    try:
        if output_format == "parquet":
            results.write_parquet(output_path)
        else:
            results.write_datasink(_json_lines_datasink(output_path))
    except ray.exceptions.RayTaskError as error:
        found = _users_error(error, paths, columns, id_column)
        if found is None:
            raise
        raise found from None
    return ray.data.read_parquet(output_path) if output_format == "parquet" else ray.data.read_json(output_path)
