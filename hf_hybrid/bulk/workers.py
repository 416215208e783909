"""`classify_with_workers`: several processes on this machine, each with its own model and share of the cores,
each classifying a shard into a folder beside the output; merged into the output at the end."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..errors import UserError
from ..loading import load_trained
from .classifying import classify_file
from .reading import CHUNK_SIZE, count_rows
from .resuming import (
    SETTINGS_SUFFIX,
    BulkSettings,
    check_resume,
    check_same_settings,
    file_sha256,
    is_finished,
    remove_output,
    settings_path,
)
from .sharding import check_shard, merge_predictions, shard_rows
from .writing import check_output_path

logger = logging.getLogger(__name__)


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
        if is_finished(output, settings) and check_resume(output, settings, overwrite=False) >= 0:
            logger.info("%s is complete", output)
            return
        raise UserError(f"{output} exists: choose another --output_file or give --overwrite")
    for values, path in zip(shard_settings, shard_files):
        if path.exists():  # a killed run's shard: going on with other settings would mix two runs' results
            check_same_settings(path, values, name=output)
    workers_dir.mkdir(parents=True, exist_ok=True)
    total = shard_rows(count_rows(settings.input_file), settings.num_shards, settings.shard_index)
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
