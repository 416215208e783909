"""What the benchmarks share: the arguments every subcommand takes, the CPU's flags, the test split, the model
folder under test, and the engines (one paper and batches through a saved model, each in a fresh process)."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "arxiv_cs.csv"
CPU_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4")
# Parity with PyTorch: an exact engine computes the same function (float32 up to summation order), an
# approximate one rounds weights or tables and may lose a little accuracy.
EXACT_PARITY = {"min_agreement": 0.999, "max_logit_difference": 1e-4}
APPROXIMATE_PARITY = {"min_agreement": 0.99, "max_accuracy_drop": 0.005}


def common_arguments() -> argparse.ArgumentParser:
    """The flags every subcommand takes (a parent parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV of papers: title, abstract, category")
    parser.add_argument("--output_json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch (and ONNX Runtime) threads")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where models and exports go (default: a temporary folder, deleted at the end)",
    )
    return parser


def engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the subcommands that run engines on the test split of the standard split."""
    parser.add_argument("--split_seed", type=int, default=42, help="seed of the 70/15/15 split (training's)")
    parser.add_argument("--max_test_papers", type=int, default=None, help="the first this many test papers only")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--latency_calls", type=int, default=50, help="timed single-paper calls per engine")
    parser.add_argument("--latency_warmup", type=int, default=5, help="untimed calls before those")
    parser.add_argument(
        "--rounds",
        type=positive_integer,
        default=1,
        help="measure every engine this many times, taking turns, and report each figure's median over the rounds "
        "(a machine whose speed drifts then slows every engine alike)",
    )


def positive_integer(text: str) -> int:
    """An argparse type: an integer of at least 1, or argparse's usage error naming the flag."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cpu_flags() -> list[str]:
    """The CPU's SIMD flags (Linux), read at run time: the figures depend on them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(flag for flag in set(flags) if flag.startswith(CPU_FLAG_PREFIXES))


def cpu_description(threads: int) -> dict:
    import torch

    return {
        "flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
    }


def parse_train_flags(argv: list[str], dataclass_types: tuple):
    """`hf-hybrid train` flags into its dataclasses, with the values of the recipe they name where not given (later
    flags win), the model's arguments included (as `train_model` sets them)."""
    from hf_hybrid.training_args import HybridTrainingArguments, ModelArguments, parse_training_arguments

    parsed = parse_training_arguments(dataclass_types, argv, prog="benchmark")
    (recipe,) = [arguments.recipe for arguments in parsed if isinstance(arguments, HybridTrainingArguments)]
    return tuple(
        arguments.for_recipe(recipe) if isinstance(arguments, ModelArguments) else arguments for arguments in parsed
    )


def standard_split(args, label_names: list[str] | None = None):
    """The 70/15/15 split of `args.data` that training makes with `--split_seed`, its test part capped by
    `--max_test_papers`; `label_names` fixes the label ids (a trained model's)."""
    from hf_hybrid.data import load_papers
    from hf_hybrid.training_args import DataArguments

    splits = load_papers(DataArguments(train_file=str(args.data)), seed=args.split_seed, label_names=label_names)
    if args.max_test_papers:
        splits["test"] = splits["test"].select(range(min(args.max_test_papers, len(splits["test"]))))
    return splits


def save_model_under_test(model, tokenizer, folder: Path) -> str:
    """Saves `model` with this checkout's model and pipeline code, which `trust_remote_code` then runs."""
    from hf_hybrid import ArxivClassificationPipeline

    ArxivClassificationPipeline(model=model, tokenizer=tokenizer).save_pretrained(str(folder))
    return str(folder)


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, not getrusage's maxrss: a process started by fork and
    exec inherits its parent's maxrss, so a child of a large parent would report the parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def in_fresh_process(function: Callable, *args):
    """`function(*args)` in a new Python process: its own imports, memory peak and load time."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ------------------------------------------------------------------------------------------------ engines


@dataclass
class Engine:
    """A loaded model as an application uses it: `encode` papers into inputs, `forward` inputs to logits, and
    `classify_one` paper as a single request."""

    encode: Callable[[list[dict]], Any]
    forward: Callable[[Any], np.ndarray]
    classify_one: Callable[[dict], Any]


def pytorch_engine(setup: dict) -> Engine:
    """`pipeline("arxiv-classification")` on the saved folder, folded with `setup["fold"]` (a dtype name) if set."""
    import torch
    from transformers import pipeline

    import hf_hybrid.model  # noqa: F401  registers the task; the model code run is the folder's

    fold = {"fold_for_inference": setup["fold"]} if setup.get("fold") else {}
    classify = pipeline("arxiv-classification", model=setup["model_dir"], trust_remote_code=True, **fold)

    def forward(inputs):
        with torch.inference_mode():
            return classify.model(**inputs).logits.float().numpy()

    return Engine(lambda papers: _tokenize(classify.tokenizer, papers, "pt"), forward, classify)


def onnx_engine(setup: dict) -> Engine:
    """An ONNX Runtime session of `setup["onnx_path"]` with the folder's tokenizer; one paper: label id."""
    import onnxruntime
    from transformers import AutoTokenizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = setup["threads"]
    options.log_severity_level = 2  # warnings shown (and counted), whatever the process's default logger says
    session = onnxruntime.InferenceSession(setup["onnx_path"], options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(setup["model_dir"], trust_remote_code=True)

    def forward(inputs):
        return session.run(["logits"], dict(inputs))[0]

    return Engine(
        lambda papers: _tokenize(tokenizer, papers, "np"),
        forward,
        lambda paper: int(forward(_tokenize(tokenizer, [paper], "np")).argmax(-1)[0]),
    )


def notebook_engine(setup: dict) -> Engine:
    """The notebook's model and Python vocabulary, with its fixed padding (30 title, 200 abstract words)."""
    import torch

    import notebook_baseline as nb

    model, vocab, class_names = nb.load_checkpoint(setup["notebook_dir"], **setup["notebook_kwargs"])

    def encode(papers):
        items = [nb.encode_one(vocab, paper["title"], paper["abstract"]) for paper in papers]
        return {key: torch.cat([item[key] for item in items]) for key in items[0]}

    def forward(inputs):
        with torch.inference_mode():
            return model(inputs["title_ids"], inputs["abstract_ids"], inputs["title_mask"])[0].numpy()

    return Engine(encode, forward, lambda paper: nb.predict_one(model, vocab, class_names, **paper))


def _tokenize(tokenizer, papers, tensors):
    return tokenizer(
        [p["title"] for p in papers], [p["abstract"] for p in papers], padding=True, return_tensors=tensors
    )


ENGINE_KINDS = {"pytorch": pytorch_engine, "onnx": onnx_engine, "notebook": notebook_engine}


def measure_engine(setup: dict, papers: list[dict], batch_size: int, latency_calls: int, latency_warmup: int):
    """Runs in a fresh process (see `in_fresh_process`): loads the engine `setup` describes and times it on
    `papers`. Returns its figures and its logits for every paper; an ONNX Runtime engine's figures count the
    warnings and errors ONNX Runtime logged (`onnxruntime_messages`), which fail its parity."""
    if setup["kind"] != "onnx":
        return _measured(setup, papers, batch_size, latency_calls, latency_warmup)
    from hf_hybrid.export import onnxruntime_messages

    with onnxruntime_messages() as messages:
        figures, logits = _measured(setup, papers, batch_size, latency_calls, latency_warmup)
    return {**figures, "onnxruntime_messages": len(messages)}, logits


def _measured(setup: dict, papers: list[dict], batch_size: int, latency_calls: int, latency_warmup: int):
    import torch

    torch.set_num_threads(setup["threads"])
    started = time.perf_counter()
    engine = ENGINE_KINDS[setup["kind"]](setup)
    engine.classify_one(papers[0])
    load_s = time.perf_counter() - started

    batches = [papers[start : start + batch_size] for start in range(0, len(papers), batch_size)]
    engine.forward(engine.encode(batches[0]))  # warm-up: first-call allocations, kernel choice
    logits, model_rates, text_rates = [], [], []
    for batch in batches:
        began = time.perf_counter()
        inputs = engine.encode(batch)
        encoded = time.perf_counter()
        logits.append(engine.forward(inputs))
        done = time.perf_counter()
        model_rates.append(len(batch) / (done - encoded))
        text_rates.append(len(batch) / (done - began))
    latencies = []
    for call in range(latency_warmup + latency_calls):
        began = time.perf_counter()
        engine.classify_one(papers[call % len(papers)])
        if call >= latency_warmup:
            latencies.append((time.perf_counter() - began) * 1000)
    figures = {
        "load_s": load_s,
        "batch_papers_per_s": statistics.median(model_rates),
        "text_batch_papers_per_s": statistics.median(text_rates),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "peak_rss_mib": peak_rss_mib(),
    }
    return figures, np.concatenate(logits)


def compare_engines(setups: dict[str, dict], test, args, parity: dict[str, dict]) -> dict:
    """Measures each engine of `setups` in its own fresh process on the test papers, the engines taking turns for
    `args.rounds` rounds (each figure: its median over the rounds, the batch speeds of every round kept in
    `rounds_batch_papers_per_s`); then scores each against the labels and, for the engines named in `parity`,
    against the `pytorch` engine."""
    papers = [{"title": title, "abstract": abstract} for title, abstract in zip(test["title"], test["abstract"])]
    labels = np.asarray(test["labels"])
    rounds, logits = {name: [] for name in setups}, {}
    for round_index in range(args.rounds):
        for name, setup in setups.items():
            print(f"[benchmark] {name}, round {round_index + 1} of {args.rounds} ...", file=sys.stderr, flush=True)
            figures, logits[name] = in_fresh_process(
                measure_engine,
                {**setup, "threads": args.threads},
                papers,
                args.batch_size,
                args.latency_calls,
                args.latency_warmup,
            )
            rounds[name].append(figures)
    results = {}
    for name, measured in rounds.items():
        # A warning in any round counts; every other figure is the rounds' median.
        results[name] = {
            figure: (max if figure == "onnxruntime_messages" else statistics.median)(m[figure] for m in measured)
            for figure in measured[0]
        }
        results[name]["rounds_batch_papers_per_s"] = [m["batch_papers_per_s"] for m in measured]
        results[name]["accuracy"] = float((logits[name].argmax(-1) == labels).mean())
    reference = logits["pytorch"]
    for name, rule in parity.items():
        agreement = float((logits[name].argmax(-1) == reference.argmax(-1)).mean())
        difference = float(np.abs(logits[name] - reference).max())
        drop = results["pytorch"]["accuracy"] - results[name]["accuracy"]
        passed = (
            agreement >= rule["min_agreement"]
            and (
                difference <= rule["max_logit_difference"]
                if "max_logit_difference" in rule
                else drop <= rule["max_accuracy_drop"]
            )
            and not results[name].get("onnxruntime_messages")
        )
        results[name].update(
            agreement_with_pytorch=agreement,
            max_abs_logit_difference=difference,
            accuracy_drop=drop,
            parity_rule=rule,
            parity_passed=passed,
        )
    return results


def engines_table(engines: dict[str, dict], baseline: str) -> str:
    """A Markdown table of `compare_engines`' results, with each engine's batch speed relative to `baseline`'s."""
    rows = [
        f"| engine | test accuracy | batch papers/s, model only | × {baseline} | batch papers/s, with tokenization "
        "| one paper p50 / p95 (ms) | load to first prediction (s) | peak RSS (MiB) | same label as PyTorch "
        "| max logit diff | parity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in engines.items():
        agreement = f"{entry['agreement_with_pytorch']:.2%}" if "agreement_with_pytorch" in entry else "-"
        difference = f"{entry['max_abs_logit_difference']:.1e}" if "max_abs_logit_difference" in entry else "-"
        parity = {True: "PASS", False: "FAIL", None: "-"}[entry.get("parity_passed")]
        if entry.get("onnxruntime_messages"):
            parity += f" ({entry['onnxruntime_messages']} ONNX Runtime warnings)"
        ratio = entry["batch_papers_per_s"] / engines[baseline]["batch_papers_per_s"]
        rows.append(
            f"| {name} | {entry['accuracy']:.4f} | {entry['batch_papers_per_s']:.1f} | {ratio:.2f}× "
            f"| {entry['text_batch_papers_per_s']:.1f} | {entry['latency_p50_ms']:.2f} / {entry['latency_p95_ms']:.2f} "
            f"| {entry['load_s']:.2f} | {entry['peak_rss_mib']:.0f} | {agreement} | {difference} | {parity} |"
        )
    measured = {name: entry["rounds_batch_papers_per_s"] for name, entry in engines.items()}
    if max(len(speeds) for speeds in measured.values()) > 1:
        rows.append("\nMedians of the rounds; batch papers/s (model only) in each round, in the order run:")
        rows += [f"- {name}: {' / '.join(f'{speed:.1f}' for speed in speeds)}" for name, speeds in measured.items()]
    return "\n".join(rows)
