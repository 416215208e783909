"""Reading a file of papers in chunks: CSV, JSON Lines (or a JSON list) and Parquet through `pyarrow`'s streaming
readers, the texts as strings and an id column as written; a file that cannot be read as its format is one
`DataError` that says where (its line or row)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np

from ..errors import DataError, UserError
from ..input_files import csv_delimiter, open_bytes, open_text, papers_format

# Papers read, classified and written at a time (`--chunk_size`), and the rows of each batch read.
CHUNK_SIZE = 4096


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


def source_batches(path: str, columns: list[str], id_column: str | None) -> Iterator:
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
    return sum(len(batch) for batch in source_batches(path, header[:1], None)) if header else 0


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
    for batch in source_batches(path, columns, id_column):
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


def column_texts(table, column: str, source: str) -> list[str]:
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
