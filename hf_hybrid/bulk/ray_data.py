"""`classify_with_ray`: the same classifier as a Ray Data `map_batches` stage (the `ray` extra), each Ray worker
holding one loaded model, reading and writing with Ray Data."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError, UserError
from ..input_files import FORMATS, format_of_name
from ..loading import load_trained
from ..model.configuration_hybrid_cnn_lstm import python_number
from .classifier import BulkClassifier, records_schema
from .reading import CHUNK_SIZE, column_texts, source_batches
from .writing import OUTPUT_FORMATS, json_lines, with_ids


def _json_lines_datasink(path: str):
    """A Ray Data datasink that writes results as `classify_file` does (`json_lines`); Ray's `write_json` goes
    through pandas, which rounds floats to 10 digits and escapes "/" in ids such as cs/0701001."""
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        def write_block_to_file(self, block, file):
            file.write(json_lines(block.to_arrow().to_pylist(), None))

    return JsonLinesDatasink(path, file_format="json")


def _users_error(error, paths: list[str], columns: list[str], id_column: str | None) -> UserError | None:
    """What the user did wrong when a Ray task failed: the error `classify_file` gives a local input that cannot
    be read or classified (naming its row or line), or a `UserError` raised in a worker; None for anything else (a
    bug, whose traceback is for the report)."""
    import ray

    for path in paths:
        if Path(path).is_file():
            try:
                for batch in source_batches(path, columns, id_column):
                    for text_column in columns[:2]:
                        column_texts(batch, text_column, path)
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
        from ..model.handler import select_device

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
        records = self.classify(
            column_texts(batch, title_column, "input"), column_texts(batch, abstract_column, "input")
        )
        ids, id_field = None, None
        if id_column is not None:
            ids, id_field = (id_column, batch.column(id_column).to_pylist()), (id_column, batch.column(id_column).type)
        return pa.Table.from_pylist(
            with_ids(records, ids), schema=records_schema(self.config, self.top_k, self.threshold, id_field)
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
