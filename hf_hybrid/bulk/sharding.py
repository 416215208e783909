"""Shards: `num_shards=N, shard_index=I` is the input rows `i` with `i % N == I` (each process reads the whole file
and classifies its share); `merge_predictions` interleaves the shards' outputs back into the output of one run."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import UserError
from .reading import CHUNK_SIZE
from .resuming import BulkSettings, read_settings, settings_path, write_settings
from .writing import check_output_path, part_name


def check_shard(settings: BulkSettings) -> None:
    if not 0 <= settings.shard_index < settings.num_shards:
        raise UserError(
            f"--shard_index {settings.shard_index} is out of range for --num_shards "
            f"{settings.num_shards} (0 to {settings.num_shards - 1})"
        )


def shard_rows(total: int, num_shards: int, shard_index: int) -> int:
    return max(0, -(-(total - shard_index) // num_shards))


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
        values = read_settings(recorded)
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
    write_settings(output, merged, finished=True)
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
    if counts != [shard_rows(total, count, s) for s in range(count)]:
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
        final = output / part_name(start)
        pq.write_table(block, final.with_name(final.name + ".tmp"))
        os.replace(final.with_name(final.name + ".tmp"), final)
