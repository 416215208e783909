"""Fast CPU inference: plain PyTorch, `fold_for_inference()` (float32 and bfloat16 tables) and ONNX Runtime
against the notebook's model at the same size, with the parity of each engine with plain PyTorch.

Run through `python scripts/benchmark.py --mode fast --model DIR [--data CSV] [--output_json fast.json]`.
`DIR` is a trained hf-hybrid model; it is re-saved with this checkout's model code (so `trust_remote_code`
runs the code under test) and exported to ONNX. The notebook's side is its own model and vocabulary at the
same size (untrained: only its speed is measured). Each engine runs in a fresh process, one after the
other, and reports:

* load time: creating the engine from the saved folder to its first prediction (imports excluded);
* batch-64 papers/s, model only (papers of the test split tokenized beforehand, padded per batch; the
  notebook pads to 30/200 as it did) and with tokenization (text in, logits out);
* one paper: `pipeline("arxiv-classification", ...)` p50/p95 for the PyTorch engines (with the pipeline's
  `fold_for_inference` keyword for the folded ones), tokenizer + session for ONNX Runtime, the notebook's
  encode + forward;
* the process' peak RSS (for the folded engines, building the tables included);
* parity: every engine but the notebook's classifies the whole test split of the standard split (70/15/15,
  seed `--split_seed`), and the report gives the share of papers with PyTorch's label and the largest logit
  difference. Parity: >= 99.9% of labels and logits within 1e-4 (labels only for bfloat16 tables).

With `--profile`, the float32 folded engine also reports its top operators (self CPU time) for batches and
for single papers. The CPU's SIMD flags are printed with the table.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENGINES = ("notebook", "pytorch", "folded_fp32", "folded_bf16", "onnx_fp32")
FOLD_DTYPES = {"folded_fp32": "float32", "folded_bf16": "bfloat16"}
PARITY_MIN_AGREEMENT = 0.999
PARITY_MAX_LOGIT_DIFFERENCE = 1e-4
CPU_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(flag for flag in set(flags) if flag.startswith(CPU_FLAG_PREFIXES))


def run_fast(args) -> dict:
    import torch

    from hf_hybrid import ArxivClassificationPipeline, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.export import export_onnx

    import notebook_baseline as nb

    if args.model is None:
        raise SystemExit("--mode fast needs --model: a folder with a trained hf-hybrid model")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hf_hybrid_fast_"))
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
    # Ships this checkout's model and pipeline code with the weights.
    ArxivClassificationPipeline(model=model, tokenizer=tokenizer).save_pretrained(str(workdir / "model"))
    onnx_path = workdir / "onnx" / "model.onnx"
    export_onnx(model, tokenizer, onnx_path.parent)

    test = _test_split(args, model.config)
    notebook_dir = workdir / "notebook"
    notebook_dir.mkdir(exist_ok=True)
    vocab = nb.build_vocabulary(test["title"], test["abstract"], 50000, 1)
    vocab.word2idx.update({f"<filler{i}>": i for i in range(len(vocab), model.config.vocab_size)})
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    notebook_kwargs = dict(embed_dim=model.config.embed_dim, num_filters=model.config.num_filters,
                           kernel_sizes=model.config.kernel_sizes, lstm_hidden=model.config.lstm_hidden,
                           head_sizes=model.config.classifier_hidden_sizes)
    torch.manual_seed(args.seed)
    notebook_model = nb.HybridCNNLSTM(vocab_size=len(vocab), num_classes=len(class_names), **notebook_kwargs)
    nb.save_checkpoint(notebook_model, vocab, class_names, notebook_dir)
    del model, notebook_model

    spec = {"model_dir": str(workdir / "model"), "onnx_path": str(onnx_path), "notebook_dir": str(notebook_dir), "notebook_kwargs": notebook_kwargs,
            "data": str(args.data), "split_seed": args.split_seed, "max_rows": args.max_rows,
            "threads": args.threads or os.cpu_count(), "batch_size": args.batch_size,
            "infer_batches": args.infer_batches, "latency_calls": args.latency_calls,
            "latency_warmup": args.latency_warmup, "profile": args.profile, "workdir": str(workdir)}
    (workdir / "spec.json").write_text(json.dumps(spec))
    results = {}
    for engine in ENGINES:
        print(f"[fast] {engine} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, __file__, engine, str(workdir / "spec.json")], check=True)
        results[engine] = json.loads((workdir / f"{engine}.json").read_text())

    reference = np.load(workdir / "pytorch.npy")
    for engine in ENGINES[2:]:
        logits = np.load(workdir / f"{engine}.npy")
        results[engine]["agreement_with_pytorch"] = float((logits.argmax(-1) == reference.argmax(-1)).mean())
        results[engine]["max_abs_logit_difference"] = float(np.abs(logits - reference).max())
        # bfloat16 tables round the logits beyond 1e-4: their parity is judged on labels alone.
        results[engine]["parity_passed"] = results[engine]["agreement_with_pytorch"] >= PARITY_MIN_AGREEMENT and (
            engine == "folded_bf16" or results[engine]["max_abs_logit_difference"] <= PARITY_MAX_LOGIT_DIFFERENCE)
    report = {"mode": "fast", "model": str(args.model), "test_papers": len(reference), "threads": spec["threads"],
              "batch_size": args.batch_size, "cpu": platform.processor() or platform.machine(),
              "cpu_flags": cpu_flags(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "engines": results}
    print(fast_table(report))
    return report


def _test_split(args, config):
    from hf_hybrid.data import load_papers
    from hf_hybrid.training_args import DataArguments

    label_names = [config.id2label[i] for i in range(config.num_labels)]
    test = load_papers(DataArguments(train_file=str(args.data)), seed=args.split_seed, label_names=label_names)["test"]
    return test.select(range(min(args.max_rows, len(test)))) if args.max_rows else test


def fast_table(report: dict) -> str:
    engines = report["engines"]
    notebook = engines["notebook"]["batch_papers_per_s"]
    rows = [
        f"{report['test_papers']} test papers, {report['threads']} threads, batches of {report['batch_size']}; "
        f"CPU flags: {' '.join(report['cpu_flags'])} (torch uses {report['torch_cpu_capability']})",
        "",
        "| engine | batch papers/s, model only | × notebook | batch papers/s, with tokenization "
        "| one paper p50 / p95 (ms) | load to first prediction (s) | peak RSS (MiB) | same label as PyTorch "
        "| max logit diff | parity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in engines.items():
        agreement = f"{entry['agreement_with_pytorch']:.2%}" if "agreement_with_pytorch" in entry else "-"
        difference = f"{entry['max_abs_logit_difference']:.1e}" if "max_abs_logit_difference" in entry else "-"
        parity = {True: "PASS", False: "FAIL", None: "-"}[entry.get("parity_passed")]
        rows.append(
            f"| {name} | {entry['batch_papers_per_s']:.1f} | {entry['batch_papers_per_s'] / notebook:.2f}× "
            f"| {entry['text_batch_papers_per_s']:.1f} | {entry['latency_p50_ms']:.2f} / {entry['latency_p95_ms']:.2f} "
            f"| {entry['load_s']:.2f} | {entry['peak_rss_mib']:.0f} | {agreement} | {difference} | {parity} |")
    for kind, ops in engines["folded_fp32"].get("profile", {}).items():
        rows += ["", f"folded_fp32, {kind}: share of self CPU time", ""]
        rows += [f"- {name}: {share:.0%}" for name, share in ops]
    return "\n".join(rows)


# ------------------------------------------------------------------ one engine, in its own process


def run_engine(engine: str, spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    load, classify_batch, classify_text, classify_one = {
        "notebook": _notebook_engine, "onnx_fp32": _onnx_engine}.get(engine, _pytorch_engine)(engine, spec)
    from hf_hybrid.data import tokenize_papers
    from hf_hybrid.model import HybridCNNLSTMConfig, HybridCNNLSTMTokenizer
    from transformers import DataCollatorWithPadding

    config = HybridCNNLSTMConfig.from_pretrained(spec["model_dir"])
    test = _test_split(argparse_namespace(spec), config)
    papers = [{"title": t, "abstract": a} for t, a in zip(test["title"], test["abstract"])]
    started = time.perf_counter()
    state = load()
    classify_one(state, papers[0])
    load_s = time.perf_counter() - started

    bs = spec["batch_size"]
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(spec["model_dir"])
    tokenized = tokenize_papers(test, tokenizer).select_columns(tokenizer.model_input_names)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="np")
    bounds = [(start, min(start + bs, len(papers))) for start in range(0, len(papers), bs)]
    if engine == "notebook":  # untrained: speed only, on --infer_batches batches
        bounds = bounds[: spec["infer_batches"] + 1]
    batches = [collate([tokenized[i] for i in range(*bound)]) for bound in bounds]
    classify_batch(state, batches[0])  # warm-up
    logits, rates = [], []
    with torch.inference_mode():
        for batch, (start, stop) in zip(batches, bounds):
            began = time.perf_counter()
            logits.append(classify_batch(state, batch))
            rates.append((stop - start) / (time.perf_counter() - began))
    text_rates = []
    for start, stop in bounds[1: spec["infer_batches"] + 1]:
        began = time.perf_counter()
        classify_text(state, papers[start:stop])
        text_rates.append((stop - start) / (time.perf_counter() - began))
    latencies = []
    for call in range(spec["latency_warmup"] + spec["latency_calls"]):
        began = time.perf_counter()
        classify_one(state, papers[call % len(papers)])
        if call >= spec["latency_warmup"]:
            latencies.append((time.perf_counter() - began) * 1000)
    result = {"load_s": load_s, "batch_papers_per_s": statistics.median(rates[1:] or rates),
              "text_batch_papers_per_s": statistics.median(text_rates),
              "latency_p50_ms": float(np.percentile(latencies, 50)), "latency_p95_ms": float(np.percentile(latencies, 95)),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if engine == "folded_fp32" and spec["profile"]:
        result["profile"] = {
            "batch of 64": _top_operators(lambda: classify_batch(state, batches[1])),
            "one paper through the pipeline": _top_operators(lambda: classify_one(state, papers[1]), repeats=20),
        }
    if engine != "notebook":
        np.save(Path(spec["workdir"]) / f"{engine}.npy", np.concatenate(logits))
    (Path(spec["workdir"]) / f"{engine}.json").write_text(json.dumps(result))


def argparse_namespace(spec):
    from types import SimpleNamespace

    return SimpleNamespace(data=spec["data"], split_seed=spec["split_seed"], max_rows=spec["max_rows"])


def _pytorch_engine(engine, spec):
    import torch
    from transformers import pipeline

    import hf_hybrid  # noqa: F401  registers the arxiv-classification task; the model code is the folder's

    fold = {"fold_for_inference": FOLD_DTYPES[engine]} if engine in FOLD_DTYPES else {}

    def load():
        return pipeline("arxiv-classification", model=spec["model_dir"], trust_remote_code=True, **fold)

    def classify_batch(classify, batch):
        with torch.inference_mode():
            return classify.model(**{key: torch.as_tensor(value) for key, value in batch.items()}).logits.numpy()

    def classify_text(classify, papers):
        inputs = classify.tokenizer([p["title"] for p in papers], [p["abstract"] for p in papers], padding=True,
                                    return_tensors="pt")
        with torch.inference_mode():
            return classify.model(**inputs).logits

    return load, classify_batch, classify_text, lambda classify, paper: classify(paper)


def _onnx_engine(engine, spec):
    import onnxruntime
    from transformers import AutoTokenizer

    def load():
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = spec["threads"]
        session = onnxruntime.InferenceSession(spec["onnx_path"], options, providers=["CPUExecutionProvider"])
        return session, AutoTokenizer.from_pretrained(spec["model_dir"], trust_remote_code=True)

    def classify_batch(state, batch):
        return state[0].run(["logits"], {key: np.asarray(value) for key, value in batch.items()})[0]

    def classify_text(state, papers):
        inputs = state[1]([p["title"] for p in papers], [p["abstract"] for p in papers], padding=True,
                          return_tensors="np")
        return classify_batch(state, inputs)

    def classify_one(state, paper):
        logits = classify_batch(state, state[1](paper["title"], paper["abstract"], return_tensors="np"))[0]
        probabilities = np.exp(logits - logits.max())
        return int((probabilities / probabilities.sum()).argmax())

    return load, classify_batch, classify_text, classify_one


def _notebook_engine(engine, spec):
    import torch

    import notebook_baseline as nb

    def load():
        return nb.load_checkpoint(spec["notebook_dir"], **spec["notebook_kwargs"])

    def encoded(vocab, papers):
        items = [nb.encode_one(vocab, p["title"], p["abstract"]) for p in papers]
        return {key: torch.cat([item[key] for item in items]) for key in items[0]}

    def classify_batch(state, batch):
        # The notebook's fixed padding: 30 title and 200 abstract positions, whatever the batch.
        ids = {key: np.asarray(batch[key]) for key in ("title_input_ids", "abstract_input_ids")}
        title = torch.zeros(len(ids["title_input_ids"]), nb.MAX_TITLE_LEN, dtype=torch.long)
        abstract = torch.zeros(len(ids["abstract_input_ids"]), nb.MAX_ABSTRACT_LEN, dtype=torch.long)
        title[:, : ids["title_input_ids"].shape[1]] = torch.as_tensor(ids["title_input_ids"][:, : nb.MAX_TITLE_LEN])
        abstract[:, : ids["abstract_input_ids"].shape[1]] = torch.as_tensor(
            ids["abstract_input_ids"][:, : nb.MAX_ABSTRACT_LEN])
        with torch.inference_mode():
            return state[0](title, abstract, title != 0)[0].numpy()

    def classify_text(state, papers):
        inputs = encoded(state[1], papers)
        with torch.inference_mode():
            return state[0](inputs["title_ids"], inputs["abstract_ids"], inputs["title_mask"])[0]

    def classify_one(state, paper):
        return nb.predict_one(*state, paper["title"], paper["abstract"])

    return load, classify_batch, classify_text, classify_one


def _top_operators(function, repeats=3, top=8):
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(repeats):
            function()
    events = [(event.key, event.self_cpu_time_total) for event in profiler.key_averages()]
    total = sum(time_us for _, time_us in events) or 1
    return [(name, time_us / total) for name, time_us in sorted(events, key=lambda e: -e[1])[:top]]


if __name__ == "__main__":
    run_engine(sys.argv[1], json.loads(Path(sys.argv[2]).read_text()))
