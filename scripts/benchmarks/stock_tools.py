"""How a trained model meets the stock tools: a text given alone, and a stock `Trainer` fine-tuning it.

`--model DIR` is a trained folder. The papers (CSV or JSON Lines of title, abstract and `category` or `label`):
`--texts_file` is classified as pairs, as one text joined by a space or a line break and read as the tokenizer
reads a text alone (its first sentence as the title, all of it as the abstract), by two other readings of one text,
and as a title or an abstract alone. Then a stock `transformers` `Trainer` trains the model for one epoch at
learning rate 0 on `--train_file`, its papers padded as `run_glue.py` pads them (`"max_length"`) or per batch,
with the BatchNorm statistics kept (`keep_batch_norm_statistics`, the default of a loaded model) or estimated
again: accuracy on `--validation_file` before and after (at learning rate 0 nothing should change).
"""

from __future__ import annotations

from pathlib import Path

LABEL_COLUMNS = ("category", "label")


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a trained hf-hybrid model folder")
    parser.add_argument("--train_file", type=Path, required=True, help="papers the Trainer runs over")
    parser.add_argument("--validation_file", type=Path, required=True, help="papers it is measured on")
    parser.add_argument("--texts_file", type=Path, help="papers read as one text (default: --validation_file)")


def run(args) -> dict:
    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer

    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model).eval()
    texts = read_papers(args.texts_file or args.validation_file, model.config)
    trainer_rows = [
        {"padding": padding, "batch_norm": statistics, **trainer_at_learning_rate_0(args, padding, statistics)}
        for padding in ("max_length", "longest")
        for statistics in ("estimated again", "kept")
    ]
    return {"model": str(args.model), "text_alone": text_alone_rows(model, tokenizer, texts), "trainer": trainer_rows}


def read_papers(path: Path, config) -> dict:
    import pandas

    table = pandas.read_json(path, lines=True) if path.suffix in (".json", ".jsonl") else pandas.read_csv(path)
    label = next(column for column in LABEL_COLUMNS if column in table.columns)
    return {
        "title": table["title"].fillna("").tolist(),
        "abstract": table["abstract"].fillna("").tolist(),
        "label": [config.label2id[name] for name in table[label]],
    }


def accuracy(model, inputs: dict, labels: list[int], batch_size: int = 256) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            batch = {key: value[start : start + batch_size] for key, value in inputs.items()}
            correct += int((model(**batch).logits.argmax(-1) == torch.tensor(labels[start : start + batch_size])).sum())
    return correct / len(labels)


def text_alone_rows(model, tokenizer, papers: dict) -> list[dict]:
    """Accuracy of each reading of the papers given as one text, or as one of their fields."""
    import torch

    def encoded(titles, abstracts=None):
        return dict(tokenizer(titles, abstracts, padding=True, return_tensors="pt"))

    def as_title_only(texts):  # how a text alone was read before: a title cut at its length, no abstract
        encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        rows = [torch.tensor(e.ids[: tokenizer.max_title_length], dtype=torch.long) for e in encodings]
        lengths = torch.tensor([len(row) for row in rows])
        title = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=tokenizer.pad_token_id)
        empty = torch.zeros(len(texts), 0, dtype=torch.long)
        mask = (torch.arange(title.shape[1]) < lengths[:, None]).long()
        return {
            "title_input_ids": title,
            "title_attention_mask": mask,
            "abstract_input_ids": empty,
            "abstract_attention_mask": empty,
        }

    def first_sentence_and_rest(texts):
        titles, rests = [], []
        for text in texts:
            first, whole = tokenizer.split_text(text)
            words = tokenizer.split_words(first, "abstract")
            titles.append(" ".join(words[: tokenizer.max_title_length]))
            rests.append(" ".join(words[tokenizer.max_title_length :]) + " " + whole[len(first) :])
        return encoded(titles, rests)

    labels, titles, abstracts = papers["label"], papers["title"], papers["abstract"]
    rows = [("title and abstract", "the pair", encoded(titles, abstracts))]
    for name, joiner in (("joined by a space", " "), ("joined by a line break", "\n")):
        texts = [title + joiner + abstract for title, abstract in zip(titles, abstracts)]
        rows += [
            (f"title and abstract {name}", "first sentence as the title, all of it as the abstract", encoded(texts)),
            (
                f"title and abstract {name}",
                "first sentence as the title, the rest as the abstract",
                first_sentence_and_rest(texts),
            ),
            (f"title and abstract {name}", "a title cut at its length (before)", as_title_only(texts)),
        ]
    rows += [
        ("the title alone", "a title cut at its length, no abstract (before)", as_title_only(titles)),
        ("the title alone", "read whole", encoded(titles)),
        ("the abstract alone", "an abstract, no title (as given)", encoded([""] * len(abstracts), abstracts)),
        ("the abstract alone", "read whole", encoded(abstracts)),
    ]
    return [
        {"given_as": given, "read_as": read, "accuracy": accuracy(model, inputs, labels)}
        for given, read, inputs in rows
    ]


def trainer_at_learning_rate_0(args, padding: str, statistics: str) -> dict:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer

    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model)
    model.keep_batch_norm_statistics = statistics == "kept"

    def dataset(path):
        papers = read_papers(path, model.config)
        pad = "max_length" if padding == "max_length" else False
        features = dict(tokenizer(papers["title"], papers["abstract"], padding=pad))
        return Dataset.from_dict({**features, "labels": papers["label"]})

    def compute_metrics(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(args.workdir / "trainer"),
            learning_rate=0.0,
            num_train_epochs=1,
            per_device_train_batch_size=32,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=dataset(args.train_file),
        eval_dataset=dataset(args.validation_file),
        compute_metrics=compute_metrics,
        data_collator=default_data_collator if padding == "max_length" else DataCollatorWithPadding(tokenizer),
    )
    before = trainer.evaluate()["eval_accuracy"]
    trainer.train()
    return {"before": before, "after": trainer.evaluate()["eval_accuracy"]}


def table(report: dict) -> str:
    lines = ["| the paper given as | read as | accuracy |", "|---|---|---|"]
    lines += [f"| {row['given_as']} | {row['read_as']} | {row['accuracy']:.4f} |" for row in report["text_alone"]]
    lines += [
        "",
        "| padding | BatchNorm statistics | before | after an epoch at learning rate 0 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row['padding']} | {row['batch_norm']} | {row['before']:.4f} | {row['after']:.4f} |"
        for row in report["trainer"]
    ]
    return "\n".join(lines)
