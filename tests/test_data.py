"""Loading, cleaning, labelling and splitting papers with `datasets`."""

import json
import logging
from collections import Counter

import pytest
from datasets import Dataset
from papers import make_papers, write_papers_csv
from transformers import DataCollatorWithPadding

from hf_hybrid import HybridCNNLSTMTokenizer
from hf_hybrid.data import DataError, load_papers, tokenize_papers, training_texts
from hf_hybrid.training_args import DataArguments


@pytest.fixture
def papers_csv(tmp_path):
    return write_papers_csv(tmp_path / "papers.csv", n_per_class=40)


def test_default_split_is_stratified_70_15_15_and_seeded(papers_csv):
    splits = load_papers(DataArguments(train_file=str(papers_csv)), seed=1)
    assert {name: len(split) for name, split in splits.items()} == {"train": 84, "validation": 18, "test": 18}
    for split in splits.values():
        assert set(Counter(split["labels"]).values()) == {len(split) // 3}
    assert splits["train"].features["labels"].names == ["cs.AI", "cs.CL", "cs.CV"]

    again = load_papers(DataArguments(train_file=str(papers_csv)), seed=1)
    other = load_papers(DataArguments(train_file=str(papers_csv)), seed=2)
    assert again["test"]["title"] == splits["test"]["title"]
    assert other["test"]["title"] != splits["test"]["title"]
    all_titles = [t for split in splits.values() for t in split["title"]]
    assert len(all_titles) == 120
    # --split_seed keeps the split of seed 1 whatever the training seed.
    fixed = load_papers(DataArguments(train_file=str(papers_csv), split_seed=1), seed=2)
    assert fixed["test"]["title"] == splits["test"]["title"] and fixed["train"]["title"] == splits["train"]["title"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_other_formats_give_the_same_papers(tmp_path, papers_csv, suffix):
    table = Dataset.from_csv(str(papers_csv))
    path = tmp_path / f"papers{suffix}"
    if suffix == ".parquet":
        table.to_parquet(str(path))
    else:
        path.write_text("\n".join(json.dumps(row) for row in table))
    from_csv = load_papers(DataArguments(train_file=str(papers_csv)))
    from_other = load_papers(DataArguments(train_file=str(path)))
    assert from_other["test"]["title"] == from_csv["test"]["title"]


def test_configurable_columns_label_subset_and_max_train_samples(tmp_path):
    rows = [
        {"name": p["title"], "summary": p["abstract"], "cat": p["category"]}
        for p in make_papers(20, labels=("cs.AI", "cs.CL", "cs.CV", "cs.LG"))
    ]
    path = tmp_path / "renamed.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    args = DataArguments(
        train_file=str(path),
        title_column="name",
        abstract_column="summary",
        label_column="cat",
        labels=["cs.CV", "cs.CL"],
        max_train_samples=10,
    )
    splits = load_papers(args)
    assert splits["train"].features["labels"].names == ["cs.CL", "cs.CV"]
    assert len(splits["train"]) == 10
    assert len(splits["validation"]) + len(splits["test"]) == 12


def test_validation_and_test_files_are_used_as_given(tmp_path, papers_csv):
    validation = write_papers_csv(tmp_path / "val.csv", n_per_class=2, seed=5)
    test = write_papers_csv(tmp_path / "test.csv", n_per_class=3, seed=6)
    splits = load_papers(
        DataArguments(train_file=str(papers_csv), validation_file=str(validation), test_file=str(test))
    )
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (120, 6, 9)

    only_test = load_papers(DataArguments(train_file=str(papers_csv), test_file=str(test)))
    assert len(only_test["test"]) == 9
    assert len(only_test["train"]) + len(only_test["validation"]) == 120


def test_papers_without_text_are_dropped_and_counted(tmp_path, caplog):
    papers = make_papers(10)
    papers += [{"title": "", "abstract": "", "category": "cs.AI"}, {"title": "  ", "abstract": "", "category": "cs.CL"}]
    path = write_papers_csv(tmp_path / "papers.csv", papers)
    with caplog.at_level(logging.WARNING):
        splits = load_papers(DataArguments(train_file=str(path)))
    assert sum(len(split) for split in splits.values()) == 30
    assert "dropped 2 of 32 papers" in caplog.text


def test_missing_column_is_named(papers_csv):
    with pytest.raises(DataError, match=r"missing column\(s\) label; it has title, abstract, category"):
        load_papers(DataArguments(train_file=str(papers_csv), label_column="label"))


def test_empty_and_unknown_files_are_refused(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("title,abstract,category\n")
    with pytest.raises(DataError, match="has no rows"):
        load_papers(DataArguments(train_file=str(empty)))
    with pytest.raises(DataError, match="no such file"):
        load_papers(DataArguments(train_file=str(tmp_path / "absent.csv")))
    with pytest.raises(DataError, match="unknown format"):
        load_papers(DataArguments(train_file=str(tmp_path / "papers.xlsx")))


def test_a_class_too_small_to_stratify_is_named(tmp_path):
    papers = make_papers(10, labels=("cs.AI", "cs.CL")) + [{"title": "x", "abstract": "y", "category": "cs.CV"}]
    path = write_papers_csv(tmp_path / "papers.csv", papers)
    with pytest.raises(DataError, match="class 'cs.CV' has only 1 paper"):
        load_papers(DataArguments(train_file=str(path)))


def test_fixed_label_names_keep_ids_and_refuse_unknown_labels(papers_csv):
    splits = load_papers(DataArguments(train_file=str(papers_csv)), label_names=["cs.CV", "cs.AI", "cs.CL", "cs.LG"])
    assert splits["train"].features["labels"].names == ["cs.CV", "cs.AI", "cs.CL", "cs.LG"]
    with pytest.raises(DataError, match=r"labels \['cs.CV'\] are not among"):
        load_papers(DataArguments(train_file=str(papers_csv)), label_names=["cs.AI", "cs.CL"])


def test_vocabulary_comes_from_the_training_split_only(papers_csv):
    splits = load_papers(DataArguments(train_file=str(papers_csv)))
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(training_texts(splits["train"]), min_frequency=1)
    train_words = {w for text in training_texts(splits["train"]) for w in tokenizer.split_words(text)}
    assert set(tokenizer.get_vocab()) - {"<PAD>", "<UNK>"} == train_words


def test_tokenized_once_and_padded_per_batch(papers_csv):
    splits = load_papers(DataArguments(train_file=str(papers_csv)))
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(training_texts(splits["train"]), min_frequency=1)
    tokenized = tokenize_papers(splits, tokenizer)
    assert set(tokenized["train"].column_names) == {*tokenizer.model_input_names, "labels"}
    batch = DataCollatorWithPadding(tokenizer)([tokenized["train"][i] for i in range(4)])
    longest = max(len(tokenized["train"][i]["abstract_input_ids"]) for i in range(4))
    assert batch["abstract_input_ids"].shape == (4, longest) and longest < tokenizer.max_abstract_length
    assert batch["labels"].tolist() == tokenized["train"]["labels"][:4]
