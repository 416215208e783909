"""Word vectors that start the embedding: learned from the training split, or read from a text file."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from papers import make_papers, write_papers_csv

from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification
from hf_hybrid.cli import main
from hf_hybrid.training import start_embedding, train_model
from hf_hybrid.training_args import DataArguments, HybridTrainingArguments, ModelArguments
from hf_hybrid.word_vectors import (
    WordVectorError,
    initialise_embedding,
    read_word_vectors,
    token_counts,
    train_word2vec,
    training_word_ids,
)

TINY_MODEL = dict(
    embed_dim=4,
    num_filters=4,
    lstm_hidden=4,
    lstm_layers=1,
    classifier_hidden_sizes=[8],
    vocab_size=500,
    min_frequency=1,
    wide_bigram_buckets=256,
)


@pytest.fixture
def tiny_classifier(make_tiny_config):
    torch.manual_seed(0)
    return HybridCNNLSTMForSequenceClassification(make_tiny_config(embed_dim=4)).eval()


def write_vectors(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_file_of_vectors_fills_the_rows_of_its_words_by_normalised_word(tmp_path, tiny_tokenizer, tiny_classifier):
    vectors_file = write_vectors(
        tmp_path / "vectors.txt",
        [
            "3 4",
            "Deep 1 2 3 4",
            "schrödinger 0.5 0.5 0.5 0.5",
            "not-in-vocabulary 9 9 9 9",
            "deep 7 7 7 7",  # a second vector of the same word: the first one wins
        ],
    )
    vocab = tiny_tokenizer.get_vocab()
    embedding = tiny_classifier.get_input_embeddings()
    before = embedding.weight.detach().clone()
    vectors = read_word_vectors(vectors_file, tiny_tokenizer, dimension=4)
    counts = np.zeros(len(tiny_tokenizer), dtype=np.int64)
    counts[[vocab["deep"], vocab["schrodinger"], vocab["networks"]]] = [3, 1, 4]
    coverage = initialise_embedding(embedding, vectors, counts, tiny_tokenizer.pad_token_id)

    weight = embedding.weight.detach()
    assert weight[vocab["deep"]].tolist() == [1, 2, 3, 4]
    assert weight[vocab["schrodinger"]].tolist() == [0.5] * 4
    assert weight[tiny_tokenizer.pad_token_id].abs().sum() == 0
    others = [i for i in range(len(tiny_tokenizer)) if i not in (vocab["deep"], vocab["schrodinger"], 0)]
    # The words without a vector keep their random direction, rescaled to the loaded vectors' mean norm.
    expected_norm = (np.linalg.norm([1, 2, 3, 4]) + 1.0) / 2
    assert weight[others].norm(dim=1).mean().item() == pytest.approx(expected_norm, rel=1e-5)
    cosine = torch.nn.functional.cosine_similarity(weight[others], before[others], dim=1)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)
    assert coverage["vocabulary_words_with_vector"] == 2
    assert coverage["vocabulary_coverage"] == round(2 / (len(tiny_tokenizer) - 1), 4)
    assert coverage["training_token_coverage"] == round(4 / 8, 4)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["2 5", "deep 1 2 3 4 5"], r"vectors.txt:1: vectors of dimension 5, but the model's embed_dim is 4"),
        (["deep 1 2 3 4", "nets 1 2 3"], r"vectors.txt:2: expected a word and 4 numbers .*got 3"),
        (["deep 1 2 3 4", "", "nets 1 2 x 4"], r"vectors.txt:3: the values after 'nets' are not all numbers"),
        (["deep 1 2 nan 4"], r"vectors.txt:1: the vector of 'deep' is not finite"),
    ],
)
def test_a_malformed_vectors_file_is_an_error_naming_the_file_and_line(tmp_path, tiny_tokenizer, lines, message):
    with pytest.raises(WordVectorError, match=message):
        read_word_vectors(write_vectors(tmp_path / "vectors.txt", lines), tiny_tokenizer, dimension=4)


def test_a_vectors_file_that_is_not_utf8_or_missing_is_an_error(tmp_path, tiny_tokenizer):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("schrödinger 1 2 3 4\n".encode("latin-1"))
    with pytest.raises(WordVectorError, match=r"latin1.txt: not UTF-8 text"):
        read_word_vectors(latin1, tiny_tokenizer, dimension=4)
    with pytest.raises(WordVectorError, match=r"missing.txt: no such file"):
        read_word_vectors(tmp_path / "missing.txt", tiny_tokenizer, dimension=4)


def test_word2vec_learns_a_vector_for_every_training_word_reproducibly(tiny_tokenizer, tiny_corpus):
    word_ids = training_word_ids(tiny_tokenizer, tiny_corpus * 5)
    first = train_word2vec(word_ids, dimension=6, seed=3)
    again = train_word2vec(word_ids, dimension=6, seed=3)
    other_seed = train_word2vec(word_ids, dimension=6, seed=4)
    seen = set(np.flatnonzero(token_counts(word_ids, len(tiny_tokenizer))))
    assert set(first.ids.tolist()) == seen
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.vectors, again.vectors)
    assert not np.array_equal(first.vectors, other_seed.vectors)
    assert first.parameters["seed"] == 3 and first.parameters["dimension"] == 6
    assert first.parameters["training_tokens"] == sum(len(row) for row in word_ids)


def test_training_word_ids_split_as_the_model_tokenizer_does_without_truncating(tiny_tokenizer):
    long_text = " ".join(["Deep"] * 100)  # far beyond max_abstract_length
    (row,) = training_word_ids(tiny_tokenizer, [long_text])
    assert row == [tiny_tokenizer.get_vocab()["deep"]] * 100


def test_start_embedding_puts_word2vec_vectors_in_the_rows_of_their_words(tiny_tokenizer, tiny_classifier):
    papers = make_papers(10)
    train = Dataset.from_list([{"title": p["title"], "abstract": p["abstract"]} for p in papers])
    tokenizer = type(tiny_tokenizer).train_from_iterator(
        [p["title"] for p in papers] + [p["abstract"] for p in papers], min_frequency=1
    )
    model = HybridCNNLSTMForSequenceClassification(
        HybridCNNLSTMConfig(
            vocab_size=len(tokenizer),
            embed_dim=4,
            num_filters=4,
            lstm_hidden=4,
            classifier_hidden_sizes=[8],
            id2label={0: "a", 1: "b"},
            wide_branch=False,
        )
    )
    coverage = start_embedding(model, tokenizer, train, "word2vec", seed=0)
    texts = [p["title"] for p in papers] + [p["abstract"] for p in papers]
    vectors = train_word2vec(training_word_ids(tokenizer, texts), dimension=4, seed=0)
    vocab = tokenizer.get_vocab()
    row_of = dict(zip(vectors.ids.tolist(), vectors.vectors))
    for word in ("planning", "image", "translation", "we"):
        assert torch.equal(model.get_input_embeddings().weight[vocab[word]].detach(), torch.tensor(row_of[vocab[word]]))
    assert coverage["source"] == "word2vec"
    assert coverage["training_token_coverage"] == 1.0  # every training word is in a min_frequency=1 vocabulary


def test_training_reports_the_coverage_in_the_log_results_and_card(tmp_path, caplog):
    train_file = write_papers_csv(tmp_path / "papers.csv", n_per_class=20)
    vectors_file = write_vectors(tmp_path / "vectors.txt", ["planning 1 0 0 0", "image 0 1 0 0", "zebra 0 0 1 0"])
    output_dir = tmp_path / "out"
    with caplog.at_level("INFO", logger="hf_hybrid"):
        train_model(
            ModelArguments(**TINY_MODEL, init_embeddings=str(vectors_file)),
            DataArguments(train_file=str(train_file)),
            HybridTrainingArguments(
                output_dir=str(output_dir),
                num_train_epochs=1,
                per_device_train_batch_size=8,
                disable_tqdm=True,
                dataloader_pin_memory=False,
            ),
        )
    start = json.loads((output_dir / "eval_results.json").read_text())["embedding_start"]
    assert start["source"] == str(vectors_file) and start["vocabulary_words_with_vector"] == 2
    assert 0 < start["training_token_coverage"] < 1
    assert "word vectors (" in caplog.text and "2 of" in caplog.text
    card = (output_dir / "README.md").read_text()
    assert f"the word vectors of `vectors.txt`, which covered {start['vocabulary_coverage']:.1%}" in card


def test_the_cli_names_the_file_and_line_of_a_bad_vectors_file(tmp_path, capsys):
    train_file = write_papers_csv(tmp_path / "papers.csv", n_per_class=10)
    vectors_file = write_vectors(tmp_path / "vectors.txt", ["planning 1 0 0 0", "image 0 1"])
    code = main(
        [
            "train",
            "--train_file",
            str(train_file),
            "--output_dir",
            str(tmp_path / "out"),
            "--embed_dim",
            "4",
            "--num_filters",
            "4",
            "--lstm_hidden",
            "4",
            "--classifier_hidden_sizes",
            "8",
            "--init_embeddings",
            str(vectors_file),
            "--disable_tqdm",
            "true",
        ]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert error.strip().splitlines()[-1] == (
        f"hf-hybrid train: error: {vectors_file}:2: expected a word and 4 numbers (the model's embed_dim), "
        "got 2 value(s)"
    )
    assert "Traceback" not in error
