"""`hf-hybrid predict`: one paper through the pipeline, or a file of papers through `hf_hybrid.bulk` (in chunks,
resumable, in shards, worker processes or on Ray Data); and `hf-hybrid merge-predictions`, which puts the shards'
outputs back together."""

import argparse
import importlib.util
import json
import logging
from pathlib import Path

from ..errors import UserError
from ..loading import load_trained
from . import description
from .model_options import chosen_device, fold_if_asked, model_parser

logger = logging.getLogger(__name__)


def run_predict(argv: list[str]) -> None:
    import torch

    from .. import bulk  # its flags' choices; it imports torch and the pipeline, which one paper needs too
    from ..ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, PROBABILITY_OR_ONE, check_ranges

    parser = model_parser("hf-hybrid predict", description("predict"))
    parser.add_argument("--title", help="one paper's title")
    parser.add_argument("--abstract", help="one paper's abstract")
    parser.add_argument("--input_file", help="CSV, JSON/JSONL or Parquet of papers, classified in chunks")
    parser.add_argument(
        "--output_file",
        help="JSON Lines, one result per paper in input order (default: stdout); "
        "a folder of part files with --output_format parquet",
    )
    parser.add_argument("--output_format", choices=bulk.OUTPUT_FORMATS, default="jsonl")
    parser.add_argument("--title_column", default="title")
    parser.add_argument("--abstract_column", default="abstract")
    parser.add_argument("--id_column", help="a column of the input copied into each result (e.g. the paper's id)")
    parser.add_argument("--top_words", type=int, default=5, help="most-attended words to report per field (0: none)")
    parser.add_argument("--top_k", type=int, help="also list the K most probable labels with their probabilities")
    parser.add_argument(
        "--threshold",
        type=float,
        help="abstain below this top probability: label null and needs_review true (multi-label "
        "models: every label with a probability this high, instead of the model's own thresholds)",
    )
    parser.add_argument(
        "--allow_empty",
        action="store_true",
        help="multi-label models: a paper with no label above its threshold gets none (by default, "
        "its most probable one); needs_review is true either way",
    )
    parser.add_argument(
        "--no_fold",
        action="store_true",
        help="with --input_file: do not fold the model for fast CPU inference (folding is the "
        "default for files; its tables take about 600 MB at the default size)",
    )
    parser.add_argument(
        "--chunk_size",
        type=int,
        default=bulk.CHUNK_SIZE,
        help="papers read, classified and written at a time (memory grows with it)",
    )
    parser.add_argument(
        "--num_shards",
        type=int,
        default=1,
        help="split the input into this many parts: rows i with i %% num_shards == shard_index",
    )
    parser.add_argument("--shard_index", type=int, default=0, help="which part this process classifies")
    parser.add_argument(
        "--num_workers",
        type=int,
        default=1,
        help="processes on this machine, each with its own model and share of the cores, each "
        "classifying a shard; merged into --output_file at the end",
    )
    parser.add_argument("--overwrite", action="store_true", help="start the output again instead of continuing it")
    parser.add_argument(
        "--ray_address",
        help="classify --input_file on a Ray cluster with Ray Data (the ray extra): 'auto' (the running "
        "cluster), 'local' (start one on this machine) or ray://HOST:10001; --output_file is a new folder of parts",
    )
    parser.add_argument("--ray_concurrency", type=int, default=1, help="with --ray_address: workers (a model each)")
    parser.add_argument("--ray_cpus_per_worker", type=float, default=1, help="with --ray_address: CPUs of each worker")
    args = parser.parse_args(argv)
    if (args.input_file is None) == (args.title is None and args.abstract is None):
        parser.error("give either --title/--abstract or --input_file")
    if args.no_fold and args.fold_for_inference:
        parser.error("give --fold_for_inference or --no_fold, not both")
    check_ranges(
        args,
        {
            "batch_size": AT_LEAST_ONE,
            "top_words": NOT_NEGATIVE,
            "top_k": AT_LEAST_ONE,
            "threshold": PROBABILITY_OR_ONE,
            "chunk_size": AT_LEAST_ONE,
            "num_shards": AT_LEAST_ONE,
            "shard_index": NOT_NEGATIVE,
            "num_workers": AT_LEAST_ONE,
            "ray_concurrency": AT_LEAST_ONE,
            "ray_cpus_per_worker": POSITIVE,
        },
    )
    if args.ray_address is not None:
        check_ray_run(args)  # the device is the Ray workers': they resolve --device themselves
        device = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    else:
        device = chosen_device(args)
    if args.num_workers > 1 and (args.output_file is None or args.input_file is None):
        parser.error("--num_workers needs --input_file and --output_file")
    if args.input_file is not None:  # a file that cannot be classified is refused before the model loads
        columns = [args.title_column, args.abstract_column, *([args.id_column] if args.id_column else [])]
        bulk.check_request(args.input_file, columns, args.output_file, args.output_format, args.id_column)
    tokenizer, model = load_trained(args.model, args.revision)
    if args.top_k is not None and args.top_k > model.config.num_labels:
        raise UserError(f"--top_k {args.top_k}: the model has only {model.config.num_labels} labels")
    if args.allow_empty and not model.config.is_multi_label:
        raise UserError("--allow_empty is for multi-label models: a single-label model abstains with --threshold")
    if args.input_file is None:
        from ..model import ArxivClassificationPipeline

        fold_if_asked(model, args)
        classify = ArxivClassificationPipeline(model=model, tokenizer=tokenizer, device=device)
        decisions = {name: getattr(args, name) for name in ("top_k", "threshold") if getattr(args, name) is not None}
        if args.allow_empty:
            decisions["allow_empty"] = True
        paper = {"title": args.title or "", "abstract": args.abstract or ""}
        print(json.dumps(classify(paper, top_words=args.top_words, **decisions)))
        return
    fold = None if args.no_fold or device.type != "cpu" else (args.fold_for_inference or "float32")
    if args.ray_address is not None:
        del model  # each Ray worker loads its own
        bulk.classify_with_ray(
            args.input_file,
            args.output_file,
            args.model,
            revision=args.revision,
            output_format=args.output_format,
            concurrency=args.ray_concurrency,
            num_cpus_per_worker=args.ray_cpus_per_worker,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            top_words=args.top_words,
            top_k=args.top_k,
            threshold=args.threshold,
            allow_empty=args.allow_empty,
            title_column=args.title_column,
            abstract_column=args.abstract_column,
            id_column=args.id_column,
            fold=fold,
            address=None if args.ray_address == "local" else args.ray_address,
            device=args.device,
        )
        return
    settings = bulk.BulkSettings(
        input_file=str(Path(args.input_file).resolve()),
        model=args.model,
        revision=args.revision,
        title_column=args.title_column,
        abstract_column=args.abstract_column,
        id_column=args.id_column,
        top_words=args.top_words,
        top_k=args.top_k,
        threshold=args.threshold,
        fold=fold,
        output_format=args.output_format,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        allow_empty=args.allow_empty,
        model_sha256=bulk.model_fingerprint(model, tokenizer),
        input_sha256=bulk.file_sha256(args.input_file),
    )
    if args.num_workers > 1:
        del model  # each worker loads its own
        bulk.classify_with_workers(
            settings,
            args.output_file,
            args.num_workers,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            overwrite=args.overwrite,
            device=str(device),
        )
        return
    model.to(device)
    if fold:
        model.fold_for_inference(fold)
        logger.info("folded the model for fast CPU inference: %s (--no_fold to skip)", bulk.describe_fold(model))
    bulk.classify_file(
        model,
        tokenizer,
        settings,
        args.output_file,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
    )


def check_ray_run(args) -> None:
    """Refuses what a Ray Data run cannot do, before the model loads: Ray writes new part files into a folder of
    its own, and splits the work itself."""
    if args.input_file is None or args.output_file is None:
        raise UserError("--ray_address needs --input_file and --output_file")
    if args.num_shards > 1 or args.num_workers > 1:
        raise UserError("--ray_address splits the work itself: give --ray_concurrency, not --num_shards/--num_workers")
    if args.overwrite:
        raise UserError("--ray_address writes a new folder: remove the old one instead of giving --overwrite")
    output = Path(args.output_file)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output} exists: Ray Data writes its parts into a new folder; choose another --output_file")
    if importlib.util.find_spec("ray") is None:
        raise UserError("--ray_address needs Ray Data: pip install 'hf-hybrid[ray]'")


def run_merge_predictions(argv: list[str]) -> None:
    from .. import bulk
    from ..ranges import AT_LEAST_ONE, check_ranges

    parser = argparse.ArgumentParser(prog="hf-hybrid merge-predictions", description=description("merge-predictions"))
    parser.add_argument("shards", nargs="+", help="the shards' --output_file (in any order)")
    parser.add_argument("--output_file", required=True, help="the merged JSON Lines file (Parquet: folder)")
    parser.add_argument("--chunk_size", type=int, default=bulk.CHUNK_SIZE, help="rows per merged Parquet part")
    args = parser.parse_args(argv)
    check_ranges(args, {"chunk_size": AT_LEAST_ONE})
    print(bulk.merge_predictions(args.shards, args.output_file, args.chunk_size))
