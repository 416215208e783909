"""Speed against the research notebook: training steps and inference, at the same model size.

The model under test is `--model DIR` (a trained hf-hybrid model), or else a new, untrained one of the size
that `hf-hybrid train`'s model flags in `--train_flags` give (by default the config's defaults), with its
vocabulary learned from the training split. The notebook's side (`scripts/notebook_baseline.py`) is its own
model at that size, untrained (only its speed counts), with its Python vocabulary filled to as many words.

* training: `--train_steps` steps of `--batch_size` papers after `--warmup_steps`, each side in a fresh
  process: the notebook's loop and 2-worker DataLoader (fixed padding) against hf-hybrid's `HybridTrainer`
  (padding per batch) with the recipe of `--train_flags` (default `--recipe notebook`: Adam with L2, the same
  arithmetic on both sides). Samples/s is the median over the steps; peak RSS is each process's own.
* inference, on the test split, each engine in a fresh process: the notebook's model, plain PyTorch, and
  `fold_for_inference()` with float32 and bfloat16 tables (see `common.measure_engine`). The folded engines'
  parity with PyTorch: float32 tables exact (labels >= 99.9%, logits within 1e-4); bfloat16 tables
  approximate (labels >= 99%, at most 0.5 accuracy points lost).
* one paper: the folded float32 engine's p50 for a single paper through `pipeline("arxiv-classification")` (label,
  scores, fusion weights and most-attended words), against its target, `SINGLE_PAPER_TARGET_MS`.
"""

from __future__ import annotations

import shlex
import statistics
import time
from dataclasses import fields
from inspect import signature
from pathlib import Path

from .common import (
    APPROXIMATE_PARITY,
    EXACT_PARITY,
    compare_engines,
    engine_arguments,
    engines_table,
    in_fresh_process,
    parse_train_flags,
    peak_rss_mib,
    save_model_under_test,
    standard_split,
)

STEPS_ONLY = [
    "--lr_scheduler_type",
    "constant",
    "--warmup_steps",
    "0",
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
    "--logging_strategy",
    "no",
    "--load_best_model_at_end",
    "false",
    "--disable_tqdm",
    "true",
    "--use_cpu",
    "true",
    "--report_to",
    "none",
]
SIDES = ("notebook", "hf_hybrid")
# One paper through the loaded pipeline on the folded path, p50, on 2 quiet cores.
SINGLE_PAPER_ENGINE = "folded_fp32"
SINGLE_PAPER_TARGET_MS = 3.5


def add_arguments(parser) -> None:
    engine_arguments(parser)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a trained hf-hybrid model (default: an untrained one, sized by --train_flags)",
    )
    parser.add_argument(
        "--train_flags",
        default="--recipe notebook",
        help="`hf-hybrid train` flags: model size (without --model) and training recipe",
    )
    parser.add_argument("--train_steps", type=int, default=20, help="timed training steps per side")
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed training steps before those")


def run(args) -> dict:
    import torch

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.training_args import HybridTrainingArguments, ModelArguments

    import notebook_baseline as nb

    workdir = args.workdir
    model_args, _ = parse_train_flags(
        ["--output_dir", str(workdir), *shlex.split(args.train_flags)], (ModelArguments, HybridTrainingArguments)
    )
    if args.model:
        model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model)
        tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
        splits = standard_split(args, [model.config.id2label[i] for i in range(model.config.num_labels)])
    else:
        splits = standard_split(args)
        model, tokenizer = untrained_model(model_args, splits["train"])
    config = model.config
    model_dir = save_model_under_test(model.eval(), tokenizer, workdir / "model")

    class_names = [config.id2label[i] for i in range(config.num_labels)]
    vocab = nb.build_vocabulary(splits["train"]["title"], splits["train"]["abstract"], config.vocab_size, 1)
    vocab.word2idx.update({f"<filler{i}>": i for i in range(len(vocab), config.vocab_size)})
    notebook_kwargs = dict(
        embed_dim=config.embed_dim,
        num_filters=config.num_filters,
        kernel_sizes=config.kernel_sizes,
        lstm_hidden=config.lstm_hidden,
        head_sizes=config.classifier_hidden_sizes,
    )
    torch.manual_seed(0)
    notebook = nb.HybridCNNLSTM(vocab_size=len(vocab), num_classes=len(class_names), **notebook_kwargs)
    notebook_dir = workdir / "notebook"
    notebook_dir.mkdir(parents=True, exist_ok=True)
    nb.save_checkpoint(notebook, vocab, class_names, notebook_dir)
    sizes = {
        "notebook_parameters": sum(p.numel() for p in notebook.parameters()),
        "hf_hybrid_parameters": model.num_parameters(),
        "vocab_size": config.vocab_size,
    }
    del model, notebook

    notebook_setup = {"kind": "notebook", "notebook_dir": str(notebook_dir), "notebook_kwargs": notebook_kwargs}
    needed = min(len(splits["train"]), args.batch_size * (args.warmup_steps + args.train_steps))
    papers = splits["train"].select(range(needed)).select_columns(["title", "abstract", "labels"]).to_dict()
    training = {
        "notebook": in_fresh_process(train_notebook, notebook_setup, papers, args),
        "hf_hybrid": in_fresh_process(train_hf_hybrid, model_dir, papers, args, str(workdir / "trainer")),
    }
    setups = {
        "notebook": notebook_setup,
        "pytorch": {"kind": "pytorch"},
        "folded_fp32": {"kind": "pytorch", "fold": "float32"},
        "folded_bf16": {"kind": "pytorch", "fold": "bfloat16"},
    }
    engines = compare_engines(
        {name: {"model_dir": model_dir, **setup} for name, setup in setups.items()},
        splits["test"],
        args,
        parity={"folded_fp32": EXACT_PARITY, "folded_bf16": APPROXIMATE_PARITY},
    )
    single_paper_ms = engines[SINGLE_PAPER_ENGINE]["latency_p50_ms"]
    return {
        "question": "speed",
        "model": str(args.model or "untrained"),
        "train_flags": args.train_flags,
        "batch_size": args.batch_size,
        "test_papers": len(splits["test"]),
        "sizes": sizes,
        "training": training,
        "engines": engines,
        "single_paper": {
            "engine": SINGLE_PAPER_ENGINE,
            "p50_ms": single_paper_ms,
            "target_p50_ms": SINGLE_PAPER_TARGET_MS,
            "met": single_paper_ms <= SINGLE_PAPER_TARGET_MS,
        },
    }


def untrained_model(model_args, train):
    """A new model and its vocabulary as `hf-hybrid train` makes them from `model_args`, before any training.
    The arguments reach the tokenizer and the config by their names, so that none is typed twice."""
    from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.class_weights import resolve_class_weights
    from hf_hybrid.data import training_texts

    values = {field.name: getattr(model_args, field.name) for field in fields(model_args)}
    tokenizer_options = {
        *signature(HybridCNNLSTMTokenizer.train_from_iterator).parameters,
        *signature(HybridCNNLSTMTokenizer).parameters,
    }
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(
        training_texts(train), **{name: value for name, value in values.items() if name in tokenizer_options}
    )
    label_names = train.features["labels"].names
    config = HybridCNNLSTMConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(label_names)),
        class_weights=resolve_class_weights(model_args.class_weights, label_names, train["labels"]),
        **model_args.config_values(),
    )
    return HybridCNNLSTMForSequenceClassification(config), tokenizer


def step_figures(end_times: list[float], warmup: int, batch_size: int) -> dict:
    """Samples/s of the steps after the first `warmup` ones, from the times each step ended."""
    durations = [later - earlier for earlier, later in zip(end_times[warmup:], end_times[warmup + 1 :])]
    return {
        "samples_per_s": statistics.median(batch_size / seconds for seconds in durations),
        "fastest_step_samples_per_s": batch_size / min(durations),
        "step_seconds": durations,
        "peak_rss_mib": peak_rss_mib(),
    }


def train_notebook(setup: dict, papers: dict, args) -> dict:
    """The notebook's training loop (fresh process): its DataLoader, Adam with L2, weighted loss, clipping."""
    import torch

    import notebook_baseline as nb

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, vocab, class_names = nb.load_checkpoint(setup["notebook_dir"], **setup["notebook_kwargs"])
    model.train()
    dataset = nb.HybridDataset(papers["title"], papers["abstract"], papers["labels"], vocab)
    criterion, optimizer = nb.make_optimization(model, nb.class_weight_list(class_names))
    end_times = [time.perf_counter()]
    while len(end_times) <= args.warmup_steps + args.train_steps:
        for batch in nb.make_loader(dataset, args.batch_size):
            nb.train_step(model, batch, criterion, optimizer)
            end_times.append(time.perf_counter())
            if len(end_times) > args.warmup_steps + args.train_steps:
                break
    return step_figures(end_times, args.warmup_steps, args.batch_size)


def train_hf_hybrid(model_dir: str, papers: dict, args, output_dir: str) -> dict:
    """hf-hybrid's `HybridTrainer` (fresh process) on the saved model, training steps only."""
    import datasets
    import torch
    from transformers import DataCollatorWithPadding, TrainerCallback

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.data import tokenize_papers
    from hf_hybrid.trainer import HybridTrainer
    from hf_hybrid.training_args import HybridTrainingArguments, ModelArguments

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    # The flags that make it train steps and nothing else come last: they win over the recipe's.
    steps = [
        "--output_dir",
        output_dir,
        "--max_steps",
        str(args.warmup_steps + args.train_steps),
        "--per_device_train_batch_size",
        str(args.batch_size),
        *STEPS_ONLY,
    ]
    _, training_args = parse_train_flags(
        shlex.split(args.train_flags) + steps, (ModelArguments, HybridTrainingArguments)
    )
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(model_dir)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(model_dir)

    class StepEndTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.times = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    timer = StepEndTimes()
    trainer = HybridTrainer(
        model=model,
        args=training_args,
        processing_class=tokenizer,
        train_dataset=tokenize_papers(datasets.Dataset.from_dict(papers), tokenizer),
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[timer],
    )
    trainer.train()
    return step_figures(timer.times, args.warmup_steps, args.batch_size)


def table(report: dict) -> str:
    training, sizes = report["training"], report["sizes"]
    rows = [
        f"Training, batch {report['batch_size']}, `{report['train_flags']}` for hf-hybrid; "
        f"{sizes['hf_hybrid_parameters']:,} parameters (notebook {sizes['notebook_parameters']:,}), "
        f"{sizes['vocab_size']:,} words",
        "",
        "| side | samples/s (median step) | fastest step (samples/s) | peak RSS (MiB) | × notebook |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        entry = training[side]
        ratio = entry["samples_per_s"] / training["notebook"]["samples_per_s"]
        rows.append(
            f"| {side} | {entry['samples_per_s']:.1f} | {entry['fastest_step_samples_per_s']:.1f} "
            f"| {entry['peak_rss_mib']:.0f} | {ratio:.2f}× |"
        )
    rows += [
        "",
        f"Inference, model {report['model']}: {report['test_papers']} test papers, batches of {report['batch_size']}",
        "",
        engines_table(report["engines"], "notebook"),
    ]
    single = report["single_paper"]
    rows += [
        "",
        f"One paper through the pipeline ({single['engine']}): p50 {single['p50_ms']:.2f} ms, target "
        f"<= {single['target_p50_ms']} ms: {'met' if single['met'] else 'missed'}",
    ]
    return "\n".join(rows)
