"""Notebook replay: the research notebook's own training loop on hf-hybrid's split, scored every epoch.

Run through `python scripts/benchmark.py --mode notebook [--num_train_epochs N]`. It answers "how does the
notebook itself score on the split `--mode accuracy` uses?", and which of the notebook's choices its score
depends on:

* `--notebook_vocabulary all_papers` (the notebook: words counted over every paper, test split included)
  or `training_split` (hf-hybrid's rule);
* `--notebook_class_weights notebook` (cs.AI weighted 2.0, the others 1.0) or `none`.

The loop is the notebook's (`scripts/notebook_baseline.py`): Adam with L2, weighted cross-entropy, clipping
at 1.0, learning rate halved after 3 epochs without a better validation accuracy, stop after 5. Unlike the
notebook, it scores the test split after every epoch instead of once at the end (with `--mode accuracy`'s
scores: accuracy, macro-F1, cs.AI recall, confusion matrix; `wall_time_s` there is the epoch's).
"""

import time

import torch
from sklearn.metrics import accuracy_score

import notebook_baseline as nb
from benchmark_accuracy import classification_scores
from hf_hybrid.data import load_papers
from hf_hybrid.training_args import DataArguments


def notebook_vocabulary(splits, which: str, max_vocab_size: int, min_freq: int) -> nb.Vocabulary:
    parts = ["train", "validation", "test"] if which == "all_papers" else ["train"]
    titles = [title for part in parts for title in splits[part]["title"]]
    abstracts = [abstract for part in parts for abstract in splits[part]["abstract"]]
    return nb.build_vocabulary(titles, abstracts, max_vocab_size, min_freq)


def predict(model, loader) -> tuple[list[int], list[int]]:
    model.eval()
    predicted, labels = [], []
    with torch.inference_mode():
        for batch in loader:
            logits, _ = model(batch["title_ids"], batch["abstract_ids"], batch["title_mask"])
            predicted += logits.argmax(dim=1).tolist()
            labels += batch["label"].tolist()
    return labels, predicted


def run_notebook(args) -> dict:
    """Trains the notebook's model up to `args.num_train_epochs` epochs; returns every epoch's scores."""
    started = time.perf_counter()
    splits = load_papers(DataArguments(train_file=str(args.data), max_train_samples=args.max_rows),
                         seed=args.split_seed)
    names = splits["train"].features["labels"].names
    vocab = notebook_vocabulary(splits, args.notebook_vocabulary, args.max_vocab_size, args.min_freq)

    def loader(part, shuffle):
        data = splits[part]
        dataset = nb.HybridDataset(list(data["title"]), list(data["abstract"]), list(data["labels"]), vocab)
        return nb.make_loader(dataset, args.batch_size, shuffle=shuffle)

    torch.manual_seed(args.split_seed)
    train_loader = loader("train", shuffle=True)
    validation_loader, test_loader = loader("validation", shuffle=False), loader("test", shuffle=False)
    model = nb.HybridCNNLSTM(len(vocab), embed_dim=args.embed_dim, num_filters=args.num_filters,
                             kernel_sizes=args.kernel_sizes, lstm_hidden=args.lstm_hidden, num_classes=len(names),
                             head_sizes=args.classifier_hidden_sizes)
    weights = nb.class_weight_list(names) if args.notebook_class_weights == "notebook" else [1.0] * len(names)
    criterion, optimizer = nb.make_optimization(model, weights)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)

    epochs, best_validation, epochs_without_best = [], -1.0, 0
    for epoch in range(1, int(args.num_train_epochs or 20) + 1):
        epoch_started = time.perf_counter()
        model.train()
        correct = seen = 0
        for batch in train_loader:
            _, predicted = nb.train_step(model, batch, criterion, optimizer)
            correct += int((torch.as_tensor(predicted) == batch["label"]).sum())
            seen += len(predicted)
        validation_accuracy = accuracy_score(*predict(model, validation_loader))
        epochs.append({
            "epoch": epoch,
            "train_accuracy": round(correct / seen, 4),
            "validation_accuracy": round(validation_accuracy, 4),
            "test": classification_scores(*predict(model, test_loader), names, epoch_started),
        })
        print(epochs[-1], flush=True)
        scheduler.step(validation_accuracy)
        if validation_accuracy > best_validation:
            best_validation, epochs_without_best = validation_accuracy, 0
        else:
            epochs_without_best += 1
            if epochs_without_best >= 5:
                break

    results = {"data": str(args.data), "vocabulary": args.notebook_vocabulary, "vocabulary_size": len(vocab),
               "class_weights": dict(zip(names, weights)), "test_papers": len(splits["test"]),
               "epochs": epochs, "wall_time_s": round(time.perf_counter() - started, 1)}
    print(epoch_table(results))
    return results


def epoch_table(results: dict) -> str:
    rows = [f"notebook replay: vocabulary from {results['vocabulary']}, class weights {results['class_weights']}",
            "| epoch | train acc | validation acc | test acc | test macro-F1 | test cs.AI recall |",
            "|---|---|---|---|---|---|"]
    for row in results["epochs"]:
        test = row["test"]
        recall = "n/a" if test["cs_ai_recall"] is None else f"{test['cs_ai_recall']:.4f}"
        rows.append(f"| {row['epoch']} | {row['train_accuracy']:.4f} | {row['validation_accuracy']:.4f} "
                    f"| {test['accuracy']:.4f} | {test['f1_macro']:.4f} | {recall} |")
    return "\n".join(rows)
