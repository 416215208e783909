"""The `hf-hybrid` command: train, finetune, evaluate, predict, push, export, demo, serve.

`hf-hybrid train` and `scripts/train.py` share one `HfArgumentParser` over `ModelArguments`,
`DataArguments` and `TrainingArguments`, so every `TrainingArguments` flag works. Errors are one
readable line on stderr and a non-zero exit status, not a traceback (a bug in hf-hybrid keeps its traceback).
This module imports only the standard library: each command imports what it uses when it runs, so that
`hf-hybrid --help` starts at once and one paper's `predict` loads no training code.
"""

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import HubError, UserError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Every command: its name -> (what runs it, what `hf-hybrid --help` says it does). Filled by `@command`.
COMMANDS: dict[str, tuple[Callable[[list[str]], None], str]] = {}


def command(name: str, description: str):
    """Registers the decorated function as the runner of `hf-hybrid NAME`."""

    def register(run: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
        COMMANDS[name] = (run, description)
        return run

    return register


def description(name: str) -> str:
    return COMMANDS[name][1]


@command("train", "train a new model on a table of papers (all TrainingArguments flags work)")
def run_train(argv: list[str]) -> None:
    from .training import train_model
    from .training_args import DataArguments, HybridTrainingArguments, ModelArguments, parse_training_arguments

    model_args, data_args, training_args = parse_training_arguments(
        (ModelArguments, DataArguments, HybridTrainingArguments), argv, prog="hf-hybrid train"
    )
    train_model(model_args, data_args, training_args)


@command("finetune", "continue training a saved model (folder or Hub repo) on new papers")
def run_finetune(argv: list[str]) -> None:
    from .training import finetune_model
    from .training_args import DataArguments, FinetuneArguments, HybridTrainingArguments, parse_training_arguments

    finetune_args, data_args, training_args = parse_training_arguments(
        (FinetuneArguments, DataArguments, HybridTrainingArguments), argv, prog="hf-hybrid finetune"
    )
    finetune_model(finetune_args, data_args, training_args)


def _model_source_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--fold_for_inference",
        nargs="?",
        const="float32",
        choices=["float32", "bfloat16"],
        help="fast CPU path: the embedding folded into the convolutions (tables in float32, "
        "about 600 MB at the default size, or bfloat16, half that)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: cpu, cuda, cuda:N or auto (a CUDA GPU when there is one); on a GPU "
        "the model runs as trained, unfolded",
    )
    return parser


def chosen_device(args) -> "torch.device":
    """The device `--device` names, refused in one line (before the model loads) when this machine has none such, or
    when it is a GPU and the folded CPU path is asked for too."""
    from .model.handler import select_device

    try:
        device = select_device(args.device)
    except ValueError as error:
        raise UserError(f"--{error}") from error
    if device.type != "cpu" and getattr(args, "fold_for_inference", None):
        raise UserError(
            f"--fold_for_inference is the fast CPU path: on --device {args.device} ({device}) the model runs "
            "unfolded; give one of the two"
        )
    return device


def fold_if_asked(model, args):
    if args.fold_for_inference:
        model.fold_for_inference(args.fold_for_inference)
    return model


def load_trained(model: str, revision: str | None = None):
    """This package's tokenizer and classifier from a folder or Hub repo: no remote code runs. A folder that is not
    there is refused before anything asks the Hub, and a failed Hub load says why (offline, no such repo, ...)."""
    from transformers.utils import logging as transformers_logging

    from .hub import model_loading
    from .model import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from .model.configuration_hybrid_cnn_lstm import MODEL_TYPE

    with model_loading(model, revision):
        model_type = HybridCNNLSTMConfig.get_config_dict(model, revision=revision)[0].get("model_type")
        if model_type != MODEL_TYPE:
            raise UserError(f"{model} is a {model_type!r} model, not an hf-hybrid ({MODEL_TYPE}) one")
        verbosity = transformers_logging.get_verbosity()
        # A sound classifier folder loads without a load report; a refused one's error line says what the report
        # would, which calls the misfit weights re-initialised, as if the load went on.
        transformers_logging.set_verbosity_error()
        try:
            tokenizer = HybridCNNLSTMTokenizer.from_pretrained(model, revision=revision)
            classifier = HybridCNNLSTMForSequenceClassification.from_pretrained(model, revision=revision).eval()
            tokenizer.check_fits(classifier.config)
        except ValueError as error:  # the shipped files' own checks of the folder (they know no hf_hybrid error)
            raise UserError(str(error)) from error
        finally:
            transformers_logging.set_verbosity(verbosity)
    return tokenizer, classifier


@command("evaluate", "print a model's metrics on a table of labelled papers, as JSON")
def run_evaluate(argv: list[str]) -> None:
    parser = _model_source_parser("hf-hybrid evaluate", description("evaluate"))
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--title_column", default="title")
    parser.add_argument("--abstract_column", default="abstract")
    parser.add_argument("--label_column", default="category")
    parser.add_argument("--output_file", help="also write the full report (per class, confusion matrix) here")
    args = parser.parse_args(argv)
    import numpy as np

    from .data import LABEL_COLUMN, encode_labels, prepare_table, read_table, tokenize_papers
    from .evaluation import CALIBRATION_METRICS, evaluation_report, predict_logits, summary_metrics
    from .ranges import AT_LEAST_ONE, check_ranges

    check_ranges(args, {"batch_size": AT_LEAST_ONE})
    device = chosen_device(args)
    tokenizer, model = load_trained(args.model, args.revision)
    fold_if_asked(model.to(device), args)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    multi_label = model.config.is_multi_label
    table = prepare_table(
        read_table(args.test_file),
        args.title_column,
        args.abstract_column,
        args.label_column,
        source=args.test_file,
        multi_label=multi_label,
    )
    tokenized = tokenize_papers(
        encode_labels(table, label_names, source=args.test_file, multi_label=multi_label), tokenizer
    )
    logits = predict_logits(model, tokenizer, tokenized, batch_size=args.batch_size, description="Evaluating")
    labels = np.asarray(tokenized[LABEL_COLUMN])
    report = evaluation_report(labels, logits, label_names, model.config.label_thresholds)
    if args.output_file:
        Path(args.output_file).write_text(json.dumps(report, indent=2))
    summary = {
        key: report[key] for key in (*summary_metrics(labels), *CALIBRATION_METRICS, "num_samples") if key in report
    }
    if not multi_label:
        summary["coverage"] = report["coverage"]
    summary["per_class_f1"] = {name: scores["f1-score"] for name, scores in report["per_class"].items()}
    print(json.dumps(summary, indent=2))


@command("predict", "classify one paper (--title/--abstract) or a file of them (--input_file)")
def run_predict(argv: list[str]) -> None:
    import torch

    from . import bulk  # its flags' choices; it imports torch and the pipeline, which one paper needs too
    from .ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, PROBABILITY_OR_ONE, check_ranges

    parser = _model_source_parser("hf-hybrid predict", description("predict"))
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
        from .model import ArxivClassificationPipeline

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


@command("merge-predictions", "merge the outputs of predict --num_shards into the output of one run")
def run_merge_predictions(argv: list[str]) -> None:
    from . import bulk
    from .ranges import AT_LEAST_ONE, check_ranges

    parser = argparse.ArgumentParser(prog="hf-hybrid merge-predictions", description=description("merge-predictions"))
    parser.add_argument("shards", nargs="+", help="the shards' --output_file (in any order)")
    parser.add_argument("--output_file", required=True, help="the merged JSON Lines file (Parquet: folder)")
    parser.add_argument("--chunk_size", type=int, default=bulk.CHUNK_SIZE, help="rows per merged Parquet part")
    args = parser.parse_args(argv)
    check_ranges(args, {"chunk_size": AT_LEAST_ONE})
    print(bulk.merge_predictions(args.shards, args.output_file, args.chunk_size))


@command("push", "upload a trained model folder to the Hugging Face Hub")
def run_push(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid push", description=description("push"))
    parser.add_argument("--model", required=True, help="the trained model folder")
    parser.add_argument("--repo_id", required=True, help="e.g. your-name/arxiv-hybrid")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", help="push to this branch (created if needed)")
    parser.add_argument("--commit_message")
    parser.add_argument("--token", help="default: the logged-in token or HF_TOKEN")
    args = parser.parse_args(argv)
    from .hub import push_model_folder

    url = push_model_folder(args.model, args.repo_id, args.private, args.revision, args.commit_message, args.token)
    print(url)


@command("serve", "serve a model over HTTP (the Inference Endpoints contract, batched), or on Ray Serve")
def run_serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid serve", description=description("serve"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: one the system picks)")
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu (the folded fast path), cuda, cuda:N (the model as trained) or auto (a CUDA GPU when there is one)",
    )
    parser.add_argument("--max_batch_size", type=int, default=64, help="most papers classified in one call")
    parser.add_argument(
        "--max_wait_ms", type=float, default=5.0, help="longest wait for a batch to fill after its first request"
    )
    parser.add_argument(
        "--max_queue", type=int, default=1024, help="most papers waiting; past it, requests get 503 and Retry-After"
    )
    parser.add_argument("--max_request_bytes", type=int, default=1_000_000, help="largest request body (else 413)")
    parser.add_argument("--request_timeout", type=float, default=30.0, help="seconds before a request gets 504")
    parser.add_argument(
        "--ray_address",
        help="deploy the model's handler.py on Ray Serve instead (the ray extra): 'auto' (the running cluster), "
        "'local' (start one on this machine) or ray://HOST:10001",
    )
    parser.add_argument("--ray_replicas", type=int, default=1, help="with --ray_address: replicas (a model each)")
    parser.add_argument("--ray_cpus_per_replica", type=float, default=1, help="with --ray_address: CPUs of each")
    args = parser.parse_args(argv)
    from .ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, check_ranges

    check_ranges(
        args,
        {
            "port": (lambda value: 0 <= value < 65536, "a port number from 0 to 65535"),
            "max_batch_size": AT_LEAST_ONE,
            "max_wait_ms": NOT_NEGATIVE,
            "max_queue": AT_LEAST_ONE,
            "max_request_bytes": AT_LEAST_ONE,
            "request_timeout": POSITIVE,
            "ray_replicas": AT_LEAST_ONE,
            "ray_cpus_per_replica": POSITIVE,
        },
    )
    if args.ray_address is not None:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
            raise UserError("--ray_address needs Ray Serve: pip install 'hf-hybrid[ray]'")
        from .serving.ray_serve import deploy

        if args.ray_address == "local":
            chosen_device(args)  # the replicas run on this machine: a device it lacks is refused now
        deploy(
            args.model,
            revision=args.revision,
            address=None if args.ray_address == "local" else args.ray_address,
            host=args.host,
            port=args.port,
            num_replicas=args.ray_replicas,
            num_cpus_per_replica=args.ray_cpus_per_replica,
            device=args.device,
        )
        return
    device = chosen_device(args)
    try:
        from .serving import ServeSettings, serve
    except ImportError as error:
        raise ImportError(
            "the server needs FastAPI, uvicorn and prometheus_client: pip install 'hf-hybrid[serve]'"
        ) from error
    tokenizer, model = load_trained(args.model, args.revision)
    model.to(device)
    if device.type == "cpu":
        model.fold_for_inference()
    settings = ServeSettings(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_request_bytes=args.max_request_bytes,
        request_timeout=args.request_timeout,
    )
    serve(model, tokenizer, settings, host=args.host, port=args.port)


@command("export", "write an ONNX model (optionally int8-quantized) that ONNX Runtime runs")
def run_export(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid export", description=description("export"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--quantize", choices=["int8"], help="also write a dynamically int8-quantized model")
    parser.add_argument("--output_dir", help="default: <model folder or repo name>-onnx")
    args = parser.parse_args(argv)
    from .export import export_onnx

    tokenizer, model = load_trained(args.model, args.revision)
    output_dir = args.output_dir or f"{args.model.rstrip('/').split('/')[-1]}-onnx"
    print(export_onnx(model, tokenizer, output_dir, quantize=args.quantize))


@command("demo", "open a model in a Gradio web page, or write a Hub Space for it (--write_space)")
def run_demo(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid demo", description=description("demo"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id (a repo id for --write_space)")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo (a Space pins it to its commit)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--write_space", metavar="DIR", help="write a Hub Space for the pushed model here instead")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --write_space: replace the Space's files (README.md, app.py, ...) already in DIR",
    )
    args = parser.parse_args(argv)
    from . import demo  # Gradio is an optional extra: only this command needs it
    from .hub import pinned_commit
    from .model import ArxivClassificationPipeline

    demo.require_gradio()
    if args.write_space:
        if Path(args.model).exists():
            raise UserError(f"{args.model} is a local folder: a Space loads the model from the Hub, give its repo id")
        demo.check_space_folder(args.write_space, args.overwrite)  # before asking the Hub anything
        commit = pinned_commit(args.model, args.revision)
        check_space_can_load(args.model, commit)
        print(
            demo.write_space(
                args.write_space, args.model, commit, space_labels(args.model, commit), overwrite=args.overwrite
            )
        )
        return
    tokenizer, model = load_trained(args.model, args.revision)
    page = demo.build_demo(ArxivClassificationPipeline(model=model, tokenizer=tokenizer))
    page.launch(server_name=args.host, server_port=args.port)


def check_space_can_load(repo_id: str, commit: str) -> None:
    """Refuses a repo that lacks a file the Space needs to load the model, naming the missing files."""
    from .hub import repo_files
    from .model import CODE_FILES, HANDLER_FILE

    # What the Space's `pipeline(..., trust_remote_code=True)` reads from the model repo (weights: one file or shards).
    code = [name for name in CODE_FILES if name != HANDLER_FILE]
    space_needs = ["config.json", "tokenizer.json", "tokenizer_config.json", *code]
    files = set(repo_files(repo_id, commit))
    missing = [name for name in space_needs if name not in files]
    if not {"model.safetensors", "model.safetensors.index.json"} & files:
        missing.append("model.safetensors")
    if missing:
        raise UserError(
            f"{repo_id} at commit {commit} has no {', '.join(missing)}, so a Space could not load it: "
            "push the complete model folder (hf-hybrid push) and try again"
        )


def space_labels(repo_id: str, commit: str) -> list[str]:
    from .model import HybridCNNLSTMConfig

    return list(HybridCNNLSTMConfig.from_pretrained(repo_id, revision=commit).id2label.values())


def usage() -> str:
    lines = ["usage: hf-hybrid COMMAND [--help] [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-hybrid: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("hf_hybrid").setLevel(logging.INFO)
    # transformers at its warning level, for the commands that import it (set now, if it is imported already).
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_warning()
    else:
        os.environ["TRANSFORMERS_VERBOSITY"] = "warning"
    try:
        COMMANDS[command][0](rest)
    # A user's mistake, a file or model that cannot be read, the Hub, a missing optional extra: one line. Anything
    # else is a bug, whose traceback is what a report needs.
    except (UserError, HubError, OSError, ImportError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"hf-hybrid {command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hf-hybrid {command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
