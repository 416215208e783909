"""Where results go: a JSON Lines file that grows by whole chunks, a folder of Parquet part files each complete or
absent, or stdout; and the check that an output's name fits its format and does not replace the input."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError

OUTPUT_FORMATS = ("jsonl", "parquet")
# A part file's name: `part-<first row>.parquet`, the row number padded to this many digits.
PART_DIGITS = 12


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
        self.handle.write(json_lines(records, ids))
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
            if part.name != part_name(total):
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

        table = pa.Table.from_pylist(with_ids(records, ids), schema=self.schema)
        final = self.path / part_name(start)
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
        self.stream.buffer.write(json_lines(records, ids)) if hasattr(self.stream, "buffer") else self.stream.write(
            json_lines(records, ids).decode()
        )
        self.stream.flush()

    def finish(self) -> None:
        pass


def part_name(start: int) -> str:
    return f"part-{start:0{PART_DIGITS}d}.parquet"


def with_ids(records: list[dict], ids) -> list[dict]:
    if ids is None:
        return records
    name, values = ids
    return [{name: value, **record} for value, record in zip(values, records)]


def json_lines(records: list[dict], ids) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in with_ids(records, ids)).encode()


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
