"""Classify a file of papers: read in chunks, classified in batches, written chunk by chunk, in input order.

`classify_file` is what `hf-hybrid predict --input_file` runs; memory stays bounded by `chunk_size` papers whatever
the size of the input. A JSON Lines output only ever grows by whole chunks, flushed; a Parquet output is a folder of
part files, each renamed into place whole; started again with the same settings, a run goes on where it stopped, and
a run with other settings is refused. `num_shards`/`shard_index` classify a share of the input, `merge_predictions`
puts the shares back together, `classify_with_workers` runs shards in processes of this machine, `classify_with_ray`
on a Ray cluster with Ray Data (the `ray` extra).

One module per job:

- `classifier`: `BulkClassifier` and the results (`build_records`, their Arrow schema);
- `reading`: the input formats, read in chunks (`read_chunks`);
- `writing`: the outputs (JSON Lines, Parquet parts, stdout) and the check of an output's name;
- `resuming`: the settings recorded beside an output (`BulkSettings`), resume and `--overwrite`;
- `sharding`: shards of an input and `merge_predictions`;
- `classifying`: `classify_file`, one process and one output, and `check_request`;
- `workers`: `classify_with_workers`, processes of this machine;
- `ray_data`: `classify_with_ray`, a Ray Data stage.
"""

from .classifier import BulkClassifier, build_records, class_probabilities, records_schema
from .classifying import check_request, classify_file, describe_fold
from .ray_data import RayClassifier, classify_with_ray
from .reading import CHUNK_SIZE, count_rows, read_chunks
from .resuming import BulkSettings, file_sha256, model_fingerprint
from .sharding import merge_predictions
from .workers import classify_with_workers
from .writing import OUTPUT_FORMATS

__all__ = [
    "CHUNK_SIZE",
    "OUTPUT_FORMATS",
    "BulkClassifier",
    "BulkSettings",
    "RayClassifier",
    "build_records",
    "check_request",
    "class_probabilities",
    "classify_file",
    "classify_with_ray",
    "classify_with_workers",
    "count_rows",
    "describe_fold",
    "file_sha256",
    "merge_predictions",
    "model_fingerprint",
    "read_chunks",
    "records_schema",
]
