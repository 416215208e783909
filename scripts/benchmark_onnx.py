"""ONNX Runtime benchmark and parity check of a trained hf-hybrid model: PyTorch vs. ONNX fp32 vs. ONNX int8.

Run through `python scripts/benchmark.py --mode onnx --model DIR [--data CSV] [--output_json onnx.json]`.
The model is exported with `hf_hybrid.export.export_onnx(..., quantize="int8")`, and all three engines
classify the test part of the same stratified, seeded 70/15/15 split that training used (seed 42), so the
papers are ones the model never saw. For each engine it reports:

* test accuracy, and for the ONNX engines the share of papers whose predicted label equals PyTorch's and
  the largest absolute logit difference; an engine passes the parity check when it agrees with PyTorch on
  at least 99% of the papers and loses at most 0.5 accuracy points;
* batch inference throughput (papers/s, batches of `--batch_size` padded per batch, tokenization excluded);
* single-paper latency p50/p95 (tokenizer + forward + argmax), one engine after the other.
"""

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PARITY_MIN_AGREEMENT = 0.99
PARITY_MAX_ACCURACY_DROP = 0.005


def run_onnx(args) -> dict:
    """Exports `args.model`, runs the three engines on the test split and prints the comparison table."""
    import onnxruntime
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.data import load_papers, tokenize_papers
    from hf_hybrid.export import ONNX_FILE, export_onnx
    from hf_hybrid.training_args import DataArguments

    if args.model is None:
        raise SystemExit("--mode onnx needs --model: a folder with a trained hf-hybrid model")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    papers = load_papers(DataArguments(train_file=str(args.data)), seed=args.split_seed, label_names=label_names)
    test = papers["test"]
    if args.max_rows:
        test = test.select(range(min(args.max_rows, len(test))))
    tokenized = tokenize_papers(test, tokenizer)
    labels = np.array(tokenized["labels"])

    export_dir = Path(args.workdir or tempfile.mkdtemp(prefix="hf_hybrid_onnx_"))
    quantized_path = export_onnx(model, tokenizer, export_dir, quantize="int8")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("onnx_fp32", export_dir / ONNX_FILE), ("onnx_int8", quantized_path))}

    def forward(engine):
        if engine == "pytorch":
            def run(batch):
                with torch.inference_mode():
                    return model(**{key: torch.as_tensor(value) for key, value in batch.items()}).logits.numpy()
        else:
            def run(batch, session=sessions[engine]):
                return session.run(["logits"], {key: np.asarray(value) for key, value in batch.items()})[0]
        return run

    engines = {name: forward(name) for name in ("pytorch", *sessions)}
    columns = [name for name in tokenizer.model_input_names if name in tokenized.column_names]
    loader = DataLoader(tokenized.select_columns(columns), batch_size=args.batch_size,
                        collate_fn=DataCollatorWithPadding(tokenizer, return_tensors="np"))
    batches = list(loader)
    results = {}
    for name, run in engines.items():
        run(batches[0])  # warm-up: first-call allocations and kernel selection
        started = time.perf_counter()
        logits = np.concatenate([run(batch) for batch in batches])
        seconds = time.perf_counter() - started
        results[name] = {"logits": logits, "accuracy": float((logits.argmax(-1) == labels).mean()),
                         "batch_papers_per_s": len(labels) / seconds}

    # One engine at a time, as a server runs one: calls in turns would let each engine's idle worker threads
    # (spin-waiting in OpenMP and ONNX Runtime) slow down the next engine's call.
    requests = [test[call % len(test)] for call in range(args.latency_warmup + args.latency_calls)]
    latencies = {name: [] for name in engines}
    for name, run in engines.items():
        for call, paper in enumerate(requests):
            started = time.perf_counter()
            run(tokenizer(paper["title"], paper["abstract"], return_tensors="np")).argmax(-1)
            if call >= args.latency_warmup:
                latencies[name].append((time.perf_counter() - started) * 1000)

    reference = results["pytorch"]["logits"]
    report = {"mode": "onnx", "model": str(args.model), "data": str(args.data), "test_papers": len(labels),
              "threads": threads, "batch_size": args.batch_size, "latency_calls": args.latency_calls,
              "onnxruntime": onnxruntime.__version__, "engines": {}}
    for name, result in results.items():
        entry = {
            "accuracy": result["accuracy"],
            "batch_papers_per_s": result["batch_papers_per_s"],
            "latency_p50_ms": statistics.median(latencies[name]),
            "latency_p95_ms": float(np.percentile(latencies[name], 95)),
        }
        if name != "pytorch":
            agreement = float((result["logits"].argmax(-1) == reference.argmax(-1)).mean())
            drop = results["pytorch"]["accuracy"] - result["accuracy"]
            entry.update(agreement_with_pytorch=agreement, accuracy_drop=drop,
                         max_abs_logit_difference=float(np.abs(result["logits"] - reference).max()),
                         parity_passed=agreement >= PARITY_MIN_AGREEMENT and drop <= PARITY_MAX_ACCURACY_DROP)
        report["engines"][name] = entry
    print(onnx_table(report))
    return report


def onnx_table(report: dict) -> str:
    rows = [
        f"{report['test_papers']} test papers, {report['threads']} threads, batches of {report['batch_size']}, "
        f"{report['latency_calls']} single-paper calls, onnxruntime {report['onnxruntime']}",
        "",
        "| engine | test accuracy | agrees with PyTorch | max logit diff | parity | batch papers/s "
        "| single p50 (ms) | single p95 (ms) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, entry in report["engines"].items():
        if name == "pytorch":
            agreement, difference, parity = "-", "-", "reference"
        else:
            agreement = f"{entry['agreement_with_pytorch']:.2%}"
            difference = f"{entry['max_abs_logit_difference']:.2e}"
            parity = "PASS" if entry["parity_passed"] else "FAIL"
        rows.append(f"| {name} | {entry['accuracy']:.4f} | {agreement} | {difference} | {parity} "
                    f"| {entry['batch_papers_per_s']:.1f} | {entry['latency_p50_ms']:.2f} "
                    f"| {entry['latency_p95_ms']:.2f} |")
    return "\n".join(rows)
