"""Benchmarks of hf-hybrid against the research notebook's pipeline (`scripts/notebook_baseline.py`).

    python scripts/benchmark.py --mode perf [--data CSV] [--train_steps 20] [--output_json perf.json]
    python scripts/benchmark.py --mode perf --tiny --max_rows 200 ...   # a quick smoke run
    python scripts/benchmark.py --mode accuracy [--data CSV] [--train_flags "--recipe notebook"] [--output_json acc.json]
    python scripts/benchmark.py --mode onnx --model TRAINED_DIR [--data CSV] [--output_json onnx.json]
    python scripts/benchmark.py --mode profile [--data CSV] [--train_steps 10] [--output_json profile.json]
    python scripts/benchmark.py --mode notebook [--num_train_epochs 2] [--notebook_vocabulary training_split]

`--mode perf` measures both implementations in one run, on the same data and the same model size
(untrained weights: only speed is measured), and prints a Markdown table with the ratios and targets:

* tokenization of the whole dataset (papers/s): the notebook's `HybridDataset` iterated once (Python
  `Vocabulary.encode`, fixed padding to 30/200, tensors per item) vs. `datasets.Dataset.map(batched=True)`
  calling the hf-hybrid tokenizer on (titles, abstracts), no padding, as our training does;
* training (samples/s, `--train_steps` steps after `--warmup_steps`) and the training process' peak RSS:
  the notebook's 2-worker `DataLoader` + Adam/weighted-CE/clipping loop vs. `transformers.Trainer` with
  `DataCollatorWithPadding` (per-batch padding) and the same optimizer (Adam, lr 1e-3, L2 1e-4, clip 1.0);
  hf-hybrid is also timed with `train_sampling_strategy="group_by_length"` (reported apart from the table);
* batch inference (papers/s, eval mode, `torch.inference_mode`): model only on pre-tokenized batches, and
  (for information) including tokenization and collation of each batch;
* single-request latency (p50/p95): `pipeline("text-classification", trust_remote_code=True)` called with
  `{"text": title, "text_pair": abstract}` vs. the notebook's encode + forward of one paper;
* loading a saved model to its first prediction (`from_pretrained` of model and tokenizer vs. the notebook's
  `torch.load` + its vocabulary), in fresh processes.

Every measurement runs in fresh subprocesses: training in `--train_rounds` processes per side, run
alternately (peak RSS is each side's own), loading in `--load_repeats` processes per side, and
tokenization, inference and latency in one process that alternates the two sides unit by unit, so both
see the same load from other processes. Throughputs are medians over the timed units (training steps,
inference batches, tenths of the dataset), which a burst of load on a shared machine moves less; the
JSON also has the total-work / total-time rates, every step time and the load average around every
subprocess. Every file written goes to a temporary folder.

`--mode accuracy` trains hf-hybrid with its defaults and fits TF-IDF + LinearSVC on the same split, and
compares their test accuracy, macro-F1, cs.AI recall and wall time (see `scripts/benchmark_accuracy.py`).

`--mode onnx --model DIR` exports a trained model to ONNX (fp32 and int8), and compares ONNX Runtime with
PyTorch on the test split: accuracy, agreement of predictions (the parity check), batch throughput and
single-paper latency (see `scripts/benchmark_onnx.py`).

`--mode fast --model DIR` compares plain PyTorch, `fold_for_inference()` (float32 and bfloat16 tables) and
ONNX Runtime with the notebook's model at the same size: batch and single-paper speed, load time, peak RSS,
and each engine's parity with PyTorch on the test split (see `scripts/benchmark_fast.py`).

`--mode profile` runs `--train_steps` of hf-hybrid's training steps under `torch.profiler` and shows where the
time goes, by part of the model and by operator (see `scripts/benchmark_profile.py`).

`--mode notebook` replays the notebook's own training loop on the accuracy mode's split and scores every
epoch on its test part, with or without the notebook's vocabulary leak and class weights (see
`scripts/benchmark_notebook.py`).

`main()` dispatches on `--mode`: another mode is a `run_<mode>(args)` function plus a `MODES` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent
if str(SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(SCRIPTS_DIR))
REPO_ROOT = SCRIPTS_DIR.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "arxiv_cs.csv"

SIDES = ("notebook", "hf_hybrid")
TOKENIZATION_CHUNKS = 10

# metric key -> (label, unit, higher is better, target); a target is ("ratio", x) or ("hf_max", x).
METRICS = {
    "tokenization_papers_per_s": ("Tokenization, whole dataset", "papers/s", True, ("ratio", 30.0)),
    "training_samples_per_s": ("Training", "samples/s", True, ("ratio", 3.0)),
    "training_peak_rss_mib": ("Peak RSS of the training process", "MiB", False, None),
    "inference_papers_per_s": ("Batch inference, model only (pre-tokenized batches)", "papers/s", True, ("ratio", 4.0)),
    "inference_e2e_papers_per_s": ("Batch inference incl. tokenization + collation", "papers/s", True, None),
    "latency_p50_ms": ("Single request p50", "ms", False, ("hf_max", 5.0)),
    "latency_p95_ms": ("Single request p95", "ms", False, None),
    "load_to_first_prediction_s": ("Load saved model -> first prediction", "s", False, None),
}


# ------------------------------------------------------------------------------------------ arguments


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="perf")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with title, abstract, category")
    parser.add_argument("--max_rows", type=int, default=None,
                        help="perf: a seeded random sample of this many rows; accuracy: at most this many training "
                             "papers; onnx: the first this many test papers")
    parser.add_argument("--output_json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: os.cpu_count())")
    parser.add_argument("--omp_wait_policy", choices=["passive", "active"], default=None,
                        help="OMP_WAIT_POLICY of the measuring processes (default: unset, OpenMP's own default); "
                             "passive keeps idle OpenMP threads from spinning, which matters on a busy machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the saved models go (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--verbose", action="store_true", help="show the subprocesses' output")

    perf = parser.add_argument_group("perf mode")
    perf.add_argument("--batch_size", type=int, default=64)
    perf.add_argument("--train_steps", type=int, default=20, help="timed training steps per side, all rounds")
    perf.add_argument("--warmup_steps", type=int, default=2, help="untimed training steps before those, per round")
    perf.add_argument("--train_rounds", type=int, default=2,
                      help="training processes per side, alternating sides, each doing its share of the steps")
    perf.add_argument("--infer_batches", type=int, default=20, help="timed inference batches per side")
    perf.add_argument("--latency_calls", type=int, default=50, help="timed single-paper calls per side")
    perf.add_argument("--latency_warmup", type=int, default=5)
    perf.add_argument("--load_repeats", type=int, default=3, help="fresh-process loads per side (median)")
    perf.add_argument("--parallel_workers", action="store_true",
                      help="smoke tests only: run both sides' subprocesses at once (they then compete for the "
                           "CPU, so the timings mean nothing)")

    accuracy = parser.add_argument_group("accuracy mode")
    accuracy.add_argument("--num_train_epochs", type=float, default=None,
                          help="hf-hybrid's epochs (default: its recipe's, with early stopping); notebook mode: 20")
    accuracy.add_argument("--train_flags", default="",
                          help="more `hf-hybrid train` flags for hf-hybrid's run, e.g. \"--recipe notebook\"")
    accuracy.add_argument("--split_seed", type=int, default=42, help="seed of the 70/15/15 split and of training")
    accuracy.add_argument("--model_output_dir", type=Path, default=None,
                          help="where the trained hf-hybrid model goes (default: inside --workdir or a temp folder)")
    accuracy.add_argument("--resume_from_checkpoint", default=None,
                          help="continue an interrupted run from one of its checkpoints (in --model_output_dir)")

    onnx = parser.add_argument_group("onnx mode (also uses --split_seed, --batch_size, --latency_calls, --max_rows)")
    onnx.add_argument("--model", type=Path, default=None, help="folder of a trained hf-hybrid model to export")

    fast = parser.add_argument_group("fast mode (also uses --model, --split_seed, --batch_size, --infer_batches, "
                                      "--latency_calls, --max_rows)")
    fast.add_argument("--profile", action="store_true", help="also profile the float32 folded engine")

    replay = parser.add_argument_group("notebook mode (also uses --num_train_epochs, --split_seed, --batch_size)")
    replay.add_argument("--notebook_vocabulary", choices=["all_papers", "training_split"], default="all_papers",
                        help="count words over every paper, test included, as the notebook did; or the training split")
    replay.add_argument("--notebook_class_weights", choices=["notebook", "none"], default="notebook",
                        help="the notebook's cs.AI=2.0, or no weights")

    model = parser.add_argument_group("model size (both sides); defaults are the notebook's")
    model.add_argument("--embed_dim", type=int, default=300)
    model.add_argument("--num_filters", type=int, default=256)
    model.add_argument("--kernel_sizes", type=int, nargs="+", default=[3, 4, 5])
    model.add_argument("--lstm_hidden", type=int, default=256)
    model.add_argument("--classifier_hidden_sizes", type=int, nargs=2, default=[512, 256])
    model.add_argument("--max_vocab_size", type=int, default=50000)
    model.add_argument("--min_freq", type=int, default=2)
    model.add_argument("--tiny", action="store_true",
                       help="a tiny model for smoke tests (embed 16, filters 8, LSTM 8, head 16/8, min_freq 1)")

    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:
        args.embed_dim, args.num_filters, args.lstm_hidden = 16, 8, 8
        args.classifier_hidden_sizes, args.min_freq = [16, 8], 1
    for name in ("batch_size", "train_steps", "warmup_steps", "train_rounds", "infer_batches", "latency_calls",
                 "load_repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.train_rounds > args.train_steps:
        parser.error("--train_rounds cannot exceed --train_steps")
    if args.latency_warmup < 0:
        parser.error("--latency_warmup must be >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        return run_worker(args)
    return MODES[args.mode](args)


# -------------------------------------------------------------------------------------- shared helpers


def set_threads(threads):
    import torch

    torch.set_num_threads(threads or os.cpu_count())
    return torch.get_num_threads()


def peak_rss_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def load_frame(spec):
    """The CSV as a DataFrame (a seeded random sample with `max_rows`)."""
    import pandas as pd

    frame = pd.read_csv(spec["data"])
    frame = frame.dropna(subset=["title", "abstract", "category"]).reset_index(drop=True)
    if spec["max_rows"] and spec["max_rows"] < len(frame):
        frame = frame.sample(n=spec["max_rows"], random_state=spec["seed"]).reset_index(drop=True)
    frame["title"] = frame["title"].astype(str)
    frame["abstract"] = frame["abstract"].astype(str)
    return frame


def percentile(values, q):
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rates(items, durations):
    """Items/s of timed units (items[i] done in durations[i] s): the median of the units' rates, and the
    total rate (all items over all time)."""
    return {
        "median": statistics.median(n / d for n, d in zip(items, durations)),
        "total": sum(items) / sum(durations),
    }


def step_durations(end_times, warmup):
    """Durations of the steps after the first `warmup` ones, from the times each step ended."""
    return [b - a for a, b in zip(end_times[warmup - 1:], end_times[warmup:])]


def chunk_bounds(n, chunks):
    """`chunks` contiguous (start, stop) ranges covering range(n), sizes differing by at most one."""
    chunks = max(1, min(chunks, n))
    edges = [round(i * n / chunks) for i in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def round_steps(spec):
    """Timed training steps of this worker's round: `train_steps` shared out over `train_rounds`."""
    start, stop = chunk_bounds(spec["train_steps"], spec["train_rounds"])[spec["round"]]
    return stop - start


def hf_config(spec, vocab_size):
    from hf_hybrid import HybridCNNLSTMConfig

    import notebook_baseline as nb

    names = spec["class_names"]
    return HybridCNNLSTMConfig(
        vocab_size=vocab_size,
        embed_dim=spec["embed_dim"],
        num_filters=spec["num_filters"],
        kernel_sizes=spec["kernel_sizes"],
        lstm_hidden=spec["lstm_hidden"],
        lstm_layers=2,
        classifier_hidden_sizes=spec["classifier_hidden_sizes"],
        id2label=dict(enumerate(names)),
        class_weights=nb.class_weight_list(names),
    )


def notebook_model_kwargs(spec):
    return dict(embed_dim=spec["embed_dim"], num_filters=spec["num_filters"], kernel_sizes=spec["kernel_sizes"],
                lstm_hidden=spec["lstm_hidden"], head_sizes=spec["classifier_hidden_sizes"])


# ---------------------------------------------------------------------------------------- perf: parent


def run_perf(args):
    threads = args.threads or os.cpu_count()
    cleanup = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="hf_hybrid_perf_")) if cleanup else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        spec, prep = prepare_perf(args, workdir, threads)
        # (result name, worker, training round); jobs of one stage run at once with --parallel_workers.
        # The runtime worker goes first and fills the trust_remote_code module cache: the loads measured
        # afterwards are normal ones, not the first-ever load of that folder.
        stages = [[("runtime", "runtime", 0)]]
        stages += [[(f"load_{side}_{n + 1}", f"load_{side}", 0) for side in SIDES] for n in range(args.load_repeats)]
        stages += [[(f"train_{side}_{n + 1}", f"train_{side}", n) for side in SIDES]
                   + [(f"grouped_train_hf_hybrid_{n + 1}", "train_hf_hybrid_grouped", n)]
                   for n in range(args.train_rounds)]
        results = {}
        for stage in stages:
            for group in [stage] if args.parallel_workers else [[job] for job in stage]:
                results.update(run_worker_processes(group, workdir, args.verbose, args.omp_wait_policy))
        report = assemble_perf_report(spec, prep, results, threads)
        report["environment"]["omp_wait_policy"] = args.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY")
        report["total_wall_s"] = time.perf_counter() - started
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_perf_table(report))
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(report, indent=2) + "\n")
        _log(f"[perf] wrote {args.output_json}")
    return 0


def prepare_perf(args, workdir, threads):
    """Builds both vocabularies from the data and saves both untrained models into `workdir`."""
    import torch
    from transformers.utils import logging as transformers_logging

    import notebook_baseline as nb
    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer

    transformers_logging.disable_progress_bar()
    set_threads(threads)
    torch.manual_seed(args.seed)
    spec = {key: getattr(args, key) for key in (
        "max_rows", "seed", "batch_size", "train_steps", "warmup_steps", "train_rounds", "infer_batches",
        "latency_calls", "latency_warmup", "load_repeats", "embed_dim", "num_filters", "kernel_sizes", "lstm_hidden",
        "classifier_hidden_sizes", "max_vocab_size", "min_freq")}
    spec.update(data=str(args.data.resolve()), threads=threads)
    frame = load_frame(spec)
    titles, abstracts = frame["title"].tolist(), frame["abstract"].tolist()
    _, spec["class_names"] = nb.encode_labels(frame["category"].tolist())
    spec["rows"] = len(frame)
    _log(f"[perf] {len(frame)} papers from {args.data}, classes {spec['class_names']}, {threads} threads")

    prep = {}
    start = time.perf_counter()
    vocab = nb.build_vocabulary(titles, abstracts, args.max_vocab_size, args.min_freq)
    prep["notebook_vocab_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(titles + abstracts, vocab_size=args.max_vocab_size,
                                                           min_frequency=args.min_freq)
    prep["hf_hybrid_vocab_build_s"] = time.perf_counter() - start
    prep["notebook_vocab_size"], prep["hf_hybrid_vocab_size"] = len(vocab), len(tokenizer)

    notebook_dir, hf_dir = workdir / "notebook", workdir / "hf_model"
    notebook_dir.mkdir(exist_ok=True)
    notebook_model = nb.HybridCNNLSTM(vocab_size=len(vocab), num_classes=len(spec["class_names"]),
                                      **notebook_model_kwargs(spec))
    nb.save_checkpoint(notebook_model, vocab, spec["class_names"], notebook_dir)
    hf_model = HybridCNNLSTMForSequenceClassification(hf_config(spec, len(tokenizer)))
    hf_model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    prep["notebook_params"] = sum(p.numel() for p in notebook_model.parameters())
    prep["hf_hybrid_params"] = sum(p.numel() for p in hf_model.parameters())
    spec.update(notebook_dir=str(notebook_dir), hf_dir=str(hf_dir))
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    return spec, prep


def run_worker_processes(jobs, workdir, verbose, omp_wait_policy=None):
    """Runs each (name, worker, round) job in its own fresh Python process, all at once when given several;
    returns their results by name."""
    env = dict(os.environ)
    env.update(
        HF_HOME=str(workdir / "hf_home"),  # the trust_remote_code module cache and datasets cache stay in workdir
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
    )
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    running = {}
    for job, worker, round_index in jobs:
        _log(f"[perf] {job} ...")
        command = [sys.executable, str(Path(__file__).resolve()), "--_worker", worker, "--_round", str(round_index),
                   "--workdir", str(workdir), "--_result", str(workdir / f"result_{job}.json")]
        pipe = None if verbose else subprocess.PIPE
        running[job] = (time.perf_counter(), os.getloadavg()[0],
                        subprocess.Popen(command, env=env, cwd=str(workdir), text=True, stdout=pipe, stderr=pipe))
    results = {}
    for job, (start, load_before, proc) in running.items():
        stdout, stderr = proc.communicate()
        wall_s = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "" if verbose else f"\n--- stdout ---\n{stdout[-3000:]}\n--- stderr ---\n{stderr[-6000:]}"
            raise RuntimeError(f"benchmark worker {job!r} failed with exit code {proc.returncode}{tail}")
        result = json.loads((workdir / f"result_{job}.json").read_text())
        result.update(process_wall_s=wall_s, load_average_1min_before=load_before,
                      load_average_1min_after=os.getloadavg()[0])
        results[job] = result
        _log(f"[perf] {job} done in {wall_s:.1f} s (1-min load average {load_before:.2f} -> "
             f"{result['load_average_1min_after']:.2f})")
    return results


def assemble_perf_report(spec, prep, results, threads):
    import torch

    rt = {side: results["runtime"][side] for side in SIDES}
    trains = {side: [r for name, r in results.items() if name.startswith(f"train_{side}_")] for side in SIDES}
    steps = {side: [seconds for r in trains[side] for seconds in r["step_seconds"]] for side in SIDES}
    tr = {side: {"training_samples_per_s": rates([spec["batch_size"]] * len(steps[side]), steps[side])}
          for side in SIDES}
    grouped_steps = [seconds for name, r in results.items() if name.startswith("grouped_train_")
                     for seconds in r["step_seconds"]]
    loads = {side: [r["load_to_first_prediction_s"] for name, r in results.items() if name.startswith(f"load_{side}_")]
             for side in SIDES}
    values = {
        "tokenization_papers_per_s": {s: rt[s]["tokenization_papers_per_s"]["median"] for s in SIDES},
        "training_samples_per_s": {s: tr[s]["training_samples_per_s"]["median"] for s in SIDES},
        "training_peak_rss_mib": {s: max(r["peak_rss_mib"] for r in trains[s]) for s in SIDES},
        "inference_papers_per_s": {s: rt[s]["inference_papers_per_s"]["median"] for s in SIDES},
        "inference_e2e_papers_per_s": {s: rt[s]["inference_e2e_papers_per_s"]["median"] for s in SIDES},
        "latency_p50_ms": {s: rt[s]["latency_p50_ms"] for s in SIDES},
        "latency_p95_ms": {s: rt[s]["latency_p95_ms"] for s in SIDES},
        "load_to_first_prediction_s": {s: statistics.median(loads[s]) for s in SIDES},
    }
    metrics = {}
    for key, (label, unit, higher_is_better, target) in METRICS.items():
        notebook, hf = values[key]["notebook"], values[key]["hf_hybrid"]
        ratio = hf / notebook if higher_is_better else notebook / hf
        entry = {"label": label, "unit": unit, "higher_is_better": higher_is_better,
                 "notebook": notebook, "hf_hybrid": hf, "ratio": ratio, "target": None, "passed": None}
        if target:
            kind, bound = target
            entry["target"] = {"kind": kind, "value": bound}
            entry["passed"] = bool(ratio >= bound) if kind == "ratio" else bool(hf <= bound)
        metrics[key] = entry

    hf_rt = rt["hf_hybrid"]
    extras = {
        "arxiv_classification_pipeline_p50_ms": hf_rt["arxiv_pipeline_p50_ms"],
        "arxiv_classification_pipeline_p95_ms": hf_rt["arxiv_pipeline_p95_ms"],
        **{f"{side}_{key}_total_rate": source[side][key]["total"] for side in SIDES
           for key, source in (("tokenization_papers_per_s", rt), ("training_samples_per_s", tr),
                               ("inference_papers_per_s", rt), ("inference_e2e_papers_per_s", rt))},
        **{f"{side}_load_to_first_prediction_s_all": loads[side] for side in SIDES},
        **{f"{side}_import_s": statistics.median(r["import_s"] for name, r in results.items()
                                                  if name.startswith(f"load_{side}_")) for side in SIDES},
        "hf_hybrid_group_by_length_training_samples_per_s":
            rates([spec["batch_size"]] * len(grouped_steps), grouped_steps)["median"],
        **{f"{side}_training_samples_per_s_best_step": spec["batch_size"] / min(steps[side]) for side in SIDES},
        **{f"{side}_training_step_seconds": steps[side] for side in SIDES},
        "notebook_dataloader_worker_peak_rss_mib": max(r["dataloader_worker_peak_rss_mib"] for r in trains["notebook"]),
        **prep,
    }
    return {
        "mode": "perf",
        "metrics": metrics,
        "extras": extras,
        "settings": {key: spec[key] for key in (
            "rows", "class_names", "batch_size", "train_steps", "warmup_steps", "train_rounds", "infer_batches",
            "latency_calls", "latency_warmup", "load_repeats", "embed_dim", "num_filters", "kernel_sizes",
            "lstm_hidden", "classifier_hidden_sizes", "max_vocab_size", "min_freq", "data", "seed")},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "datasets": _version("datasets"),
            "tokenizers": _version("tokenizers"),
            "threads": threads,
            "cpu_count": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "load_average_end": list(os.getloadavg()),
        },
        "workers": results,
    }


def format_perf_table(report):
    s, env, e = report["settings"], report["environment"], report["extras"]
    rows = [
        f"## hf-hybrid vs. notebook: performance ({s['rows']} papers, batch {s['batch_size']}, "
        f"{env['threads']} threads, OMP_WAIT_POLICY {env.get('omp_wait_policy') or 'unset'}, torch {env['torch']}, "
        f"{env['cpu_capability']})",
        "",
        "| Metric | Unit | notebook | hf-hybrid | Ratio (>1 = hf-hybrid better) | Target | Result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    notes = {
        "tokenization_papers_per_s": f" (median of {TOKENIZATION_CHUNKS} tenths)",
        "training_samples_per_s": f" (median of {s['train_steps']} steps, {s['train_rounds']} processes alternating "
                                  f"sides, each after {s['warmup_steps']} warm-up steps)",
        "inference_papers_per_s": f" (median of {s['infer_batches']} batches, eval, inference_mode)",
        "inference_e2e_papers_per_s": f" (median of {s['infer_batches']} batches)",
        "latency_p50_ms": f" ({s['latency_calls']} calls; hf-hybrid: text-classification pipeline)",
        "load_to_first_prediction_s": f" (median of {s['load_repeats']} fresh processes)",
    }
    for key, m in report["metrics"].items():
        target, result = "-", "-"
        if m["target"]:
            bound = m["target"]["value"]
            target = f"≥ {bound:g}×" if m["target"]["kind"] == "ratio" else f"hf-hybrid ≤ {bound:g} {m['unit']}"
            result = "PASS" if m["passed"] else "FAIL"
        rows.append(f"| {m['label']}{notes.get(key, '')} | {m['unit']} | {_fmt(m['notebook'])} "
                    f"| {_fmt(m['hf_hybrid'])} "
                    f"| {m['ratio']:.2f}× | {target} | {result} |")
    workers = report["workers"].values()
    busiest = max(max(w["load_average_1min_before"], w["load_average_1min_after"]) for w in workers)
    rows += [
        "",
        f"- `arxiv-classification` pipeline (label, scores, attentions, top words): p50 "
        f"{e['arxiv_classification_pipeline_p50_ms']:.2f} ms, p95 {e['arxiv_classification_pipeline_p95_ms']:.2f} ms",
        f"- total-work / total-time rates, notebook vs hf-hybrid: tokenization "
        f"{_fmt(e['notebook_tokenization_papers_per_s_total_rate'])} vs "
        f"{_fmt(e['hf_hybrid_tokenization_papers_per_s_total_rate'])}, training "
        f"{_fmt(e['notebook_training_samples_per_s_total_rate'])} vs "
        f"{_fmt(e['hf_hybrid_training_samples_per_s_total_rate'])}, inference "
        f"{_fmt(e['notebook_inference_papers_per_s_total_rate'])} vs "
        f"{_fmt(e['hf_hybrid_inference_papers_per_s_total_rate'])}; training at the fastest step "
        f"{_fmt(e['notebook_training_samples_per_s_best_step'])} vs "
        f"{_fmt(e['hf_hybrid_training_samples_per_s_best_step'])}",
        f"- hf-hybrid training with `--train_sampling_strategy group_by_length` (batches of similar title "
        f"length): {_fmt(e['hf_hybrid_group_by_length_training_samples_per_s'])} samples/s (median, same steps)",
        f"- vocabulary build: notebook {e['notebook_vocab_build_s']:.2f} s ({e['notebook_vocab_size']} words), "
        f"hf-hybrid {e['hf_hybrid_vocab_build_s']:.2f} s ({e['hf_hybrid_vocab_size']} words); parameters: notebook "
        f"{e['notebook_params']:,}, hf-hybrid {e['hf_hybrid_params']:,}",
        "- tokenization, inference and latency ran in one process, alternating the two sides unit by unit",
        f"- imports before loading (not in the load time): notebook {e['notebook_import_s']:.2f} s, "
        f"hf-hybrid {e['hf_hybrid_import_s']:.2f} s",
        f"- peak RSS: getrusage maxrss of each side's training subprocess (data, tokenization, model, optimizer); "
        f"each of the notebook's 2 DataLoader workers peaked at {_fmt(e['notebook_dataloader_worker_peak_rss_mib'])} "
        f"MiB more (a separate process)",
        f"- highest 1-min load average around a subprocess: {busiest:.2f} on {env['cpu_count']} CPUs"
        + (" (other processes competed for the CPU: expect noise)" if busiest > env["cpu_count"] * 0.75 else ""),
    ]
    return "\n".join(rows)


def _fmt(value):
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2e}"


def _version(package):
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001
        return None


def _log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- perf: workers


def run_worker(args):
    spec = json.loads((args.workdir / "spec.json").read_text())
    workers = {
        "runtime": worker_runtime,
        "load_notebook": worker_load_notebook,
        "load_hf_hybrid": worker_load_hf,
        "train_notebook": worker_train_notebook,
        "train_hf_hybrid": worker_train_hf,
        "train_hf_hybrid_grouped": lambda spec: worker_train_hf(spec, sampling="group_by_length"),
    }
    spec["round"] = args._round
    result = workers[args._worker](spec)
    result["worker_peak_rss_mib"] = peak_rss_mib()
    args._result.write_text(json.dumps(result, indent=2))
    return 0


def _cold_load_notebook(spec, title, abstract):
    """torch.load of the state dict + the vocabulary, then the first prediction."""
    import notebook_baseline as nb

    start = time.perf_counter()
    model, vocab, class_names = nb.load_checkpoint(spec["notebook_dir"], **notebook_model_kwargs(spec))
    nb.predict_one(model, vocab, class_names, title, abstract)
    return time.perf_counter() - start, (model, vocab, class_names)


def _cold_load_hf(spec, title, abstract):
    """from_pretrained of tokenizer and model with the code shipped in the folder, then the first prediction."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"], trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(spec["hf_dir"], trust_remote_code=True)
    model.eval()
    with torch.inference_mode():
        logits = model(**tokenizer(title, abstract, return_tensors="pt")).logits
    model.config.id2label[int(logits.argmax(-1))]
    return time.perf_counter() - start, (model, tokenizer)


def worker_load_notebook(spec):
    start = time.perf_counter()
    import torch  # noqa: F401  imports are timed apart from the load

    import notebook_baseline  # noqa: F401

    import_s = time.perf_counter() - start
    set_threads(spec["threads"])
    return {"import_s": import_s, "load_to_first_prediction_s": _cold_load_notebook(spec, *_first_paper(spec))[0]}


def worker_load_hf(spec):
    start = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

    import_s = time.perf_counter() - start
    set_threads(spec["threads"])
    seconds, _ = _cold_load_hf(spec, *_first_paper(spec))
    # The load ran the code shipped in the folder: hf_hybrid itself was never imported.
    return {"import_s": import_s, "load_to_first_prediction_s": seconds,
            "hf_hybrid_imported_during_load": "hf_hybrid" in sys.modules}


def _first_paper(spec):
    import csv

    with open(spec["data"], newline="") as handle:
        row = next(csv.DictReader(handle))
    return row["title"], row["abstract"]


def worker_runtime(spec):
    """Tokenization, batch inference and latency of both sides in one process, interleaved unit by unit
    (tenth of the dataset, batch, call) so that both see the same load from other processes."""
    start = time.perf_counter()
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, pipeline

    import hf_hybrid  # noqa: F401  registers the arxiv-classification pipeline task
    import notebook_baseline as nb

    out = {"import_s": time.perf_counter() - start, "threads": set_threads(spec["threads"])}
    datasets.disable_progress_bars()
    frame = load_frame(spec)
    titles, abstracts = frame["title"].tolist(), frame["abstract"].tolist()
    notebook_model, vocab, class_names = nb.load_checkpoint(spec["notebook_dir"], **notebook_model_kwargs(spec))
    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"], trust_remote_code=True)
    hf_model = AutoModelForSequenceClassification.from_pretrained(spec["hf_dir"], trust_remote_code=True).eval()
    sides = {side: {} for side in SIDES}
    pairs = Interleaved()

    # Tokenization of the whole dataset, tenth by tenth. Notebook: its Dataset iterated once (encode per item,
    # fixed padding, tensors). hf-hybrid: Dataset.map(batched=True) into Arrow, as our training does.
    labels, _ = nb.encode_labels(frame["category"].tolist())
    values = frame[["title", "abstract"]].values
    notebook_dataset = nb.HybridDataset(values[:, 0], values[:, 1], labels, vocab)
    hf_dataset = datasets.Dataset.from_dict({"title": titles, "abstract": abstracts})
    items, parts, sizes = [], [], []

    def tokenize_hf(begin, end):
        part = hf_dataset.select(range(begin, end))
        parts.append(part.map(lambda batch: tokenizer(batch["title"], batch["abstract"]), batched=True,
                              remove_columns=["title", "abstract"]))

    for begin, end in chunk_bounds(len(frame), TOKENIZATION_CHUNKS):
        pairs.run(lambda: items.extend(notebook_dataset[i] for i in range(begin, end)), lambda: tokenize_hf(begin, end))
        sizes.append(end - begin)
    for side, durations in pairs.take().items():
        sides[side]["tokenization_papers_per_s"] = rates(sizes, durations)
    tokenized = datasets.concatenate_datasets(parts)

    # Batch inference, model only: notebook batches fixed-padded, hf-hybrid batches padded per batch.
    bs, n_batches, warmup = spec["batch_size"], spec["infer_batches"], 2
    keys = ("title_ids", "abstract_ids", "title_mask")
    rows = [[(b * bs + j) % len(items) for j in range(bs)] for b in range(n_batches + warmup)]
    notebook_batches = [{k: torch.stack([items[i][k] for i in indices]) for k in keys} for indices in rows]
    collator = DataCollatorWithPadding(tokenizer)
    hf_batches = [collator([tokenized[i] for i in indices]) for indices in rows]
    notebook_model.eval()

    def notebook_forward(batch):
        notebook_model(batch["title_ids"], batch["abstract_ids"], batch["title_mask"])

    def notebook_from_text(indices):
        encoded = [notebook_dataset[i] for i in indices]
        notebook_forward({k: torch.stack([item[k] for item in encoded]) for k in keys})

    def hf_from_text(indices):
        hf_model(**tokenizer([titles[i] for i in indices], [abstracts[i] for i in indices], padding=True,
                             return_tensors="pt"))

    for metric, run_notebook, run_hf, inputs in (
        ("inference_papers_per_s", notebook_forward, lambda batch: hf_model(**batch),
         list(zip(notebook_batches, hf_batches))),
        ("inference_e2e_papers_per_s", notebook_from_text, hf_from_text, [(indices, indices) for indices in rows]),
    ):
        with torch.inference_mode():
            for number, (notebook_input, hf_input) in enumerate(inputs):
                pairs.run(lambda: run_notebook(notebook_input), lambda: run_hf(hf_input))
                if number < warmup:
                    pairs.take()
        for side, durations in pairs.take().items():
            sides[side][metric] = rates([bs] * len(durations), durations)

    # Single requests: the notebook's encode + forward + argmax; transformers.pipeline for hf-hybrid.
    classify = pipeline("text-classification", model=spec["hf_dir"], trust_remote_code=True)
    arxiv = pipeline("arxiv-classification", model=spec["hf_dir"], trust_remote_code=True)
    latencies = {"notebook": [], "hf_hybrid": [], "arxiv": []}
    for call in range(spec["latency_warmup"] + spec["latency_calls"]):
        i = call % len(titles)
        pairs.run(lambda: nb.predict_one(notebook_model, vocab, class_names, titles[i], abstracts[i]),
                  lambda: classify({"text": titles[i], "text_pair": abstracts[i]}),
                  lambda: arxiv({"title": titles[i], "abstract": abstracts[i]}))
        durations = pairs.take()
        if call >= spec["latency_warmup"]:
            for key, seconds in zip(latencies, durations.values()):
                latencies[key].append(seconds[0] * 1000)
    for side in SIDES:
        sides[side]["latency_p50_ms"] = percentile(latencies[side], 50)
        sides[side]["latency_p95_ms"] = percentile(latencies[side], 95)
    sides["hf_hybrid"]["arxiv_pipeline_p50_ms"] = percentile(latencies["arxiv"], 50)
    sides["hf_hybrid"]["arxiv_pipeline_p95_ms"] = percentile(latencies["arxiv"], 95)
    out.update(sides)
    return out


class Interleaved:
    """Times callables run in turns, alternating which goes first, and collects each one's durations."""

    def __init__(self):
        self.turn = 0
        self.durations = None

    def run(self, *functions):
        names = list(SIDES) + [f"extra_{i}" for i in range(len(functions) - len(SIDES))]
        if self.durations is None:
            self.durations = {name: [] for name in names}
        order = list(range(len(functions)))
        if self.turn % 2:
            order.reverse()
        self.turn += 1
        for index in order:
            start = time.perf_counter()
            functions[index]()
            self.durations[names[index]].append(time.perf_counter() - start)

    def take(self):
        durations, self.durations = self.durations, None
        return durations


def worker_train_notebook(spec):
    import torch

    import notebook_baseline as nb

    out = {"threads": set_threads(spec["threads"])}
    torch.manual_seed(spec["seed"])
    frame = load_frame(spec)
    labels, class_names = nb.encode_labels(frame["category"].tolist())
    model, vocab, _ = nb.load_checkpoint(spec["notebook_dir"], **notebook_model_kwargs(spec))
    values = frame[["title", "abstract"]].values
    loader = nb.make_loader(nb.HybridDataset(values[:, 0], values[:, 1], labels, vocab), spec["batch_size"])
    criterion, optimizer = nb.make_optimization(model, nb.class_weight_list(class_names))
    model.train()

    total = spec["warmup_steps"] + round_steps(spec)
    end_times = []
    iterator = iter(loader)
    while len(end_times) < total:
        try:
            batch = next(iterator)
        except StopIteration:  # next epoch
            iterator = iter(loader)
            continue
        nb.train_step(model, batch, criterion, optimizer)
        end_times.append(time.perf_counter())
    durations = step_durations(end_times, spec["warmup_steps"])
    out["training_samples_per_s"] = rates([spec["batch_size"]] * len(durations), durations)
    out["step_seconds"] = durations
    del iterator  # shuts the DataLoader workers down, so that RUSAGE_CHILDREN counts them
    out["peak_rss_mib"] = peak_rss_mib()
    out["dataloader_worker_peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)
    return out


def worker_train_hf(spec, sampling="random"):
    """hf-hybrid's training steps; `sampling` is the `--train_sampling_strategy` of `TrainingArguments`."""
    import datasets
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.trainer import adam_with_l2

    out = {"threads": set_threads(spec["threads"])}
    torch.manual_seed(spec["seed"])
    datasets.disable_progress_bars()
    frame = load_frame(spec)
    label_ids = {name: i for i, name in enumerate(spec["class_names"])}
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(spec["hf_dir"])
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(spec["hf_dir"])
    dataset = datasets.Dataset.from_dict({
        "title": frame["title"].tolist(),
        "abstract": frame["abstract"].tolist(),
        "labels": [label_ids[c] for c in frame["category"]],
    })
    dataset = dataset.map(lambda batch: tokenizer(batch["title"], batch["abstract"]), batched=True,
                          remove_columns=["title", "abstract"])

    class StepEndTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    timer = StepEndTimes()
    training_args = TrainingArguments(
        output_dir=str(Path(spec["hf_dir"]).parent / "trainer_out"),
        max_steps=spec["warmup_steps"] + round_steps(spec),
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=1e-3,
        weight_decay=1e-4,
        max_grad_norm=1.0,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        use_cpu=True,
        seed=spec["seed"],
        train_sampling_strategy=sampling,
    )
    trainer = Trainer(
        model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[timer],
        # the notebook's optimizer, as --recipe notebook trains: the same arithmetic on both sides
        optimizer_cls_and_kwargs=adam_with_l2(learning_rate=1e-3, weight_decay=1e-4),
    )
    trainer.train()
    durations = step_durations(timer.times, spec["warmup_steps"])
    out["training_samples_per_s"] = rates([spec["batch_size"]] * len(durations), durations)
    out["step_seconds"] = durations
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def run_accuracy(args):
    from benchmark_accuracy import run_accuracy as train_and_compare

    results = train_and_compare(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(results, indent=2))
    return 0


def run_onnx(args):
    from benchmark_onnx import run_onnx as export_and_compare

    report = export_and_compare(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(report, indent=2))
    return 0


def run_profile(args):
    from benchmark_profile import run_profile as profile_training_steps

    report = profile_training_steps(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(report, indent=2))
    return 0


def run_fast(args):
    from benchmark_fast import run_fast as compare_engines

    report = compare_engines(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(report, indent=2))
    return 0


def run_notebook(args):
    from benchmark_notebook import run_notebook as replay_notebook

    set_threads(args.threads)
    results = replay_notebook(args)
    if args.output_json:
        args.output_json.write_text(json.dumps(results, indent=2))
    return 0


MODES = {"perf": run_perf, "accuracy": run_accuracy, "onnx": run_onnx, "profile": run_profile,
         "notebook": run_notebook, "fast": run_fast}

if __name__ == "__main__":
    sys.exit(main())
