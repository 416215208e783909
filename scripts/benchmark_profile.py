"""Where a training step of hf-hybrid spends its time: `torch.profiler` over a few steps at the default size.

Run through `python scripts/benchmark.py --mode profile [--data CSV] [--train_steps 10] [--output_json p.json]`.
The steps are hf-hybrid's own (its model, per-batch padding, weighted loss, clipping 1.0, its fused Adam) on
batches of `--batch_size` papers of the CSV; operators are summed by self CPU time into the parts of the model
they belong to, and the table lists those parts and the top operators.
"""

import time

# operator-name fragment -> part of the training step, first match wins
PARTS = (
    ("adam", "optimizer (Adam)"),
    ("conv", "abstract convolutions"),
    ("rnn", "title BiLSTM"),
    ("lstm", "title BiLSTM"),
    ("embedding", "embedding"),
    ("dropout", "dropout"),
    ("bernoulli", "dropout"),
    ("native_batch_norm", "batch norm"),
    ("norm", "gradient clipping"),
    ("addmm", "linear layers (head, attention, fusion)"),
    ("aten::mm", "linear layers (head, attention, fusion)"),
    ("aten::bmm", "linear layers (head, attention, fusion)"),
)


def part_of(operator: str) -> str:
    name = operator.lower()
    return next((part for fragment, part in PARTS if fragment in name), "other")


def run_profile(args) -> dict:
    import datasets
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import DataCollatorWithPadding

    from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.trainer import adam_with_l2

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    papers = datasets.load_dataset("csv", data_files=str(args.data), split="train")
    labels = sorted(set(papers["category"]))
    # The vocabulary, and so the embedding and Adam's work, is as large as a real run's: learned from every paper.
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(list(papers["title"]) + list(papers["abstract"]),
                                                           vocab_size=args.max_vocab_size, min_frequency=args.min_freq)
    steps = args.warmup_steps + args.train_steps
    papers = papers.shuffle(seed=args.seed).select(range(min(len(papers), steps * args.batch_size)))
    config = HybridCNNLSTMConfig(
        vocab_size=len(tokenizer), embed_dim=args.embed_dim, num_filters=args.num_filters,
        kernel_sizes=args.kernel_sizes, lstm_hidden=args.lstm_hidden,
        classifier_hidden_sizes=args.classifier_hidden_sizes, id2label=dict(enumerate(labels)),
    )
    model = HybridCNNLSTMForSequenceClassification(config).train()
    optimizer_class, optimizer_kwargs = adam_with_l2(learning_rate=1e-3, weight_decay=1e-4)
    optimizer = optimizer_class(model.parameters(), **optimizer_kwargs)
    collate = DataCollatorWithPadding(tokenizer)
    label_ids = {name: i for i, name in enumerate(labels)}
    batches = []
    for start in range(0, len(papers), args.batch_size):
        rows = papers[start:start + args.batch_size]
        encoded = tokenizer(rows["title"], rows["abstract"])
        batch = collate([{key: encoded[key][i] for key in encoded} for i in range(len(rows["title"]))])
        batch["labels"] = torch.tensor([label_ids[name] for name in rows["category"]])
        batches.append(batch)

    def step(batch):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for batch in batches[:args.warmup_steps]:
        step(batch)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for batch in batches[args.warmup_steps:steps]:
            step(batch)
    seconds = time.perf_counter() - started
    operators = [(event.key, event.self_cpu_time_total / 1e6) for event in profiler.key_averages()]
    total = sum(time_s for _, time_s in operators)
    parts = {}
    for name, time_s in operators:
        parts[part_of(name)] = parts.get(part_of(name), 0.0) + time_s
    report = {
        "mode": "profile",
        "steps": args.train_steps,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "seconds_per_step": seconds / args.train_steps,
        "parts": {part: time_s / total for part, time_s in sorted(parts.items(), key=lambda item: -item[1])},
        "top_operators": [{"operator": name, "share": time_s / total}
                          for name, time_s in sorted(operators, key=lambda item: -item[1])[:12]],
    }
    print(profile_table(report))
    return report


def profile_table(report: dict) -> str:
    rows = [f"{report['steps']} training steps of batch {report['batch_size']}, {report['threads']} threads: "
            f"{report['seconds_per_step']:.2f} s per step (under the profiler)", "",
            "| part of the step | share of CPU time |", "|---|---:|"]
    rows += [f"| {part} | {share:.1%} |" for part, share in report["parts"].items()]
    rows += ["", "| operator | share |", "|---|---:|"]
    rows += [f"| `{entry['operator']}` | {entry['share']:.1%} |" for entry in report["top_operators"]]
    return "\n".join(rows)
