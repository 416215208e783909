"""What makes a partial output safe to go on with: the settings that decide its content (`BulkSettings`, the
input's and the model's digests among them), recorded beside the output (`<output>.bulk.json`, or `_bulk.json` in a
Parquet folder). A run started again with the same settings keeps the complete lines (parts) already written and
goes on; one with other settings is refused, naming each difference. `remove_output` (`--overwrite`) removes only
what a bulk prediction wrote."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..model.configuration_hybrid_cnn_lstm import python_number
from .writing import JsonLinesOutput, ParquetOutput

SETTINGS_SUFFIX = ".bulk.json"
PARQUET_SETTINGS = "_bulk.json"


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


CHANGED = {
    "model_sha256": "model_sha256 (the model's weights, config or tokenizer)",
    "input_sha256": "input_sha256 (the input file's content)",
}


def check_resume(path: Path, settings: BulkSettings, overwrite: bool) -> int:
    """How many results `path` already holds for `settings` (0 for a new output); refuses other settings."""
    if overwrite:
        remove_output(path, settings.output_format)
    elif path.is_file() or path.is_dir() and any(path.iterdir()):  # an empty folder is a new Parquet output
        check_same_settings(path, settings)
        output = ParquetOutput(path, None) if settings.output_format == "parquet" else JsonLinesOutput(path)
        return output.written()
    _check_output_kind(path, settings.output_format)
    write_settings(path, settings, finished=False)
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
    before = read_settings(recorded)
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


def read_settings(recorded: Path) -> dict:
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


def write_settings(path: Path, settings: BulkSettings, finished: bool) -> None:
    recorded = settings_path(path, settings.output_format)
    recorded.parent.mkdir(parents=True, exist_ok=True)
    temporary = recorded.with_name(recorded.name + ".tmp")
    temporary.write_text(json.dumps({**asdict(settings), "finished": finished}, indent=2) + "\n")
    os.replace(temporary, recorded)


def is_finished(path: Path, settings: BulkSettings) -> bool:
    recorded = settings_path(path, settings.output_format)
    return recorded.exists() and read_settings(recorded).get("finished", False)
