"""One process classifying a file (or its shard) into one output: `classify_file`, what `hf-hybrid predict
--input_file` runs. Memory stays bounded by `chunk_size` papers whatever the size of the input: a chunk is read,
classified and written before the next is read, in input order; a partial output is continued, a complete one left
as it is."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import DataError, UserError
from ..input_files import papers_format
from .classifier import BulkClassifier, records_schema
from .reading import CHUNK_SIZE, column_texts, count_rows, read_chunks, source_batches
from .resuming import BulkSettings, check_resume, file_sha256, is_finished, model_fingerprint, write_settings
from .sharding import check_shard, shard_rows
from .writing import JsonLinesOutput, ParquetOutput, StreamOutput, check_output_path

logger = logging.getLogger(__name__)


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
    batches = source_batches(input_file, columns, id_column)
    try:
        if not any(len(batch) for batch in batches):  # the first batch, unless it is empty
            raise DataError(f"{input_file}: has no rows")
    finally:
        batches.close()


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
        done = check_resume(path, settings, overwrite)

    total = shard_rows(all_rows, settings.num_shards, settings.shard_index)
    if output_file is not None and done >= total and is_finished(path, settings):
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
                column_texts(table, settings.title_column, source),
                column_texts(table, settings.abstract_column, source),
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
        write_settings(path, settings, finished=True)
    return classified
