"""HybridCNNLSTMTokenizer: the notebook's words, two fields with their own lengths, padding, saving."""

import re

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding

from hf_hybrid import HybridCNNLSTMTokenizer


def expected_words(text):
    """The research notebook's words (`Vocabulary.tokenize`), but split at hyphens too."""
    return re.sub(r"[^a-z0-9\s]", " ", text.lower()).split()


ASCII_SENTENCES = [
    "Deep Residual Learning for Image Recognition",
    "BERT: Pre-training of Deep Bidirectional Transformers (2018)!",
    "state_of_the_art results on ImageNet-1k, 76.5% top-1; see [12].",
    "  Tabs\tand\nnewlines -- and a lone - dash ",
    "Error-correction, e.g. for 3D point-clouds & graphs.",
]


@pytest.fixture
def wide_tokenizer():
    """Knows every word of ASCII_SENTENCES and truncates nothing in them."""
    return HybridCNNLSTMTokenizer.train_from_iterator(
        ASCII_SENTENCES + ["schrodinger"], min_frequency=1, max_title_length=50, max_abstract_length=50
    )


# --- words ---


@pytest.mark.parametrize("sentence", ASCII_SENTENCES)
def test_words_are_the_notebooks_split_at_hyphens_on_ascii_text(wide_tokenizer, sentence):
    assert wide_tokenizer.split_words(sentence) == expected_words(sentence)
    ids = wide_tokenizer(sentence, sentence)["abstract_input_ids"]
    vocab = wide_tokenizer.get_vocab()
    assert ids == [vocab[word] for word in expected_words(sentence)]


def test_normalisation_strips_accents_folds_case_keeps_digits_and_splits_hyphenated_words(wide_tokenizer):
    words = wide_tokenizer.split_words("Schrödinger's Error-Correction: 42 QUBITS, ÉCOLE!")
    assert words == ["schrodinger", "s", "error", "correction", "42", "qubits", "ecole"]


def test_accented_word_maps_to_its_unaccented_id(wide_tokenizer):
    encoded = wide_tokenizer("SCHRÖDINGER", "Schrödinger")
    schrodinger = wide_tokenizer.convert_tokens_to_ids("schrodinger")
    assert schrodinger != wide_tokenizer.unk_token_id
    assert encoded["title_input_ids"] == encoded["abstract_input_ids"] == [schrodinger]


def test_special_tokens_non_ascii_and_added_tokens_get_their_own_ids(wide_tokenizer):
    wide_tokenizer.add_tokens(["quantumword"])
    texts = ["the <UNK> and <PAD> tokens", "Schrödinger nets", "quantumword deep"]
    ids = wide_tokenizer(texts, texts)["abstract_input_ids"]
    unk, pad = wide_tokenizer.unk_token_id, wide_tokenizer.pad_token_id
    assert ids[0][1:4] == [unk, wide_tokenizer.convert_tokens_to_ids("and"), pad]
    assert ids[1] == [wide_tokenizer.convert_tokens_to_ids("schrodinger"), unk]  # "nets" was never seen
    assert ids[2] == [wide_tokenizer.convert_tokens_to_ids(word) for word in ("quantumword", "deep")]
    assert len({*ids[2], unk}) == 3


def test_datasets_fingerprint_of_the_tokenizer_is_the_same_before_and_after_a_call(wide_tokenizer):
    """`Dataset.map` names its cached results by a hash of the function, tokenizer included: encoding must
    not change it, or a re-run would not find its cache."""
    from datasets.fingerprint import Hasher

    before = Hasher.hash(wide_tokenizer)
    wide_tokenizer(ASCII_SENTENCES, ASCII_SENTENCES)
    assert Hasher.hash(wide_tokenizer) == before


def test_pad_is_id_0_and_unknown_words_are_id_1(tiny_tokenizer):
    assert tiny_tokenizer.pad_token == "<PAD>" and tiny_tokenizer.pad_token_id == 0
    assert tiny_tokenizer.unk_token == "<UNK>" and tiny_tokenizer.unk_token_id == 1
    assert tiny_tokenizer.convert_tokens_to_ids(["<PAD>", "<UNK>"]) == [0, 1]
    assert tiny_tokenizer("zebra deep", "")["title_input_ids"] == [1, tiny_tokenizer.convert_tokens_to_ids("deep")]


def test_split_words_truncates_to_the_fields_length_and_keeps_unknown_words(tiny_tokenizer):
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen x y"
    assert tiny_tokenizer.split_words(text, "title") == text.split()[:8]
    assert tiny_tokenizer.split_words(text, "abstract") == text.split()[:16]
    assert tiny_tokenizer.split_words("Zebra-Crossing Ünïcode") == ["zebra", "crossing", "unicode"]
    with pytest.raises(ValueError, match="field"):
        tiny_tokenizer.split_words(text, "body")


# --- training ---


def test_training_keeps_words_seen_min_frequency_times():
    texts = ["alpha alpha alpha", "beta beta", "gamma"]
    vocab = HybridCNNLSTMTokenizer.train_from_iterator(texts, min_frequency=2).get_vocab()
    assert vocab.keys() == {"<PAD>", "<UNK>", "alpha", "beta"}
    assert vocab["<PAD>"] == 0 and vocab["<UNK>"] == 1


def test_training_keeps_the_vocab_size_most_frequent_words_specials_included():
    texts = ["alpha alpha alpha", "beta beta", "gamma"]
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(texts, vocab_size=3, min_frequency=1)
    assert tokenizer.get_vocab() == {"<PAD>": 0, "<UNK>": 1, "alpha": 2}
    assert len(tokenizer) == 3


def test_training_passes_max_lengths_to_the_tokenizer(tiny_tokenizer):
    assert (tiny_tokenizer.max_title_length, tiny_tokenizer.max_abstract_length) == (8, 16)
    default = HybridCNNLSTMTokenizer.train_from_iterator(["a b"], min_frequency=1)
    assert (default.max_title_length, default.max_abstract_length) == (30, 200)


# --- fields, truncation, padding ---


def test_title_and_abstract_are_truncated_to_their_own_lengths(tiny_tokenizer):
    long_text = " ".join(["deep"] * 40)
    encoded = tiny_tokenizer([long_text], [long_text])
    assert len(encoded["title_input_ids"][0]) == 8
    assert len(encoded["abstract_input_ids"][0]) == 16
    assert encoded["title_attention_mask"][0] == [1] * 8
    untruncated = tiny_tokenizer([long_text], [long_text], truncation=False)
    assert len(untruncated["title_input_ids"][0]) == len(untruncated["abstract_input_ids"][0]) == 40


def test_padding_true_pads_each_field_to_its_own_longest_item(tiny_tokenizer):
    encoded = tiny_tokenizer(
        ["deep networks", "attention is all you need"],
        ["we train deep networks on image classes", "language"],
        padding=True,
        return_tensors="pt",
    )
    assert encoded["title_input_ids"].shape == (2, 5)
    assert encoded["abstract_input_ids"].shape == (2, 7)
    assert encoded["title_attention_mask"].tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert encoded["abstract_attention_mask"].tolist() == [[1] * 7, [1, 0, 0, 0, 0, 0, 0]]
    assert torch.equal(encoded["title_input_ids"] == 0, encoded["title_attention_mask"] == 0)
    assert torch.equal(encoded["abstract_input_ids"] == 0, encoded["abstract_attention_mask"] == 0)


def test_padding_max_length_pads_to_the_configured_lengths(tiny_tokenizer):
    encoded = tiny_tokenizer(["deep networks"], ["language"], padding="max_length", return_tensors="pt")
    assert encoded["title_input_ids"].shape == (1, 8)
    assert encoded["abstract_input_ids"].shape == (1, 16)
    assert encoded["title_attention_mask"][0].tolist() == [1, 1] + [0] * 6
    assert encoded["abstract_attention_mask"][0].tolist() == [1] + [0] * 15


def test_padding_max_length_defaults_to_30_and_200_words():
    tokenizer = HybridCNNLSTMTokenizer(vocab={"<PAD>": 0, "<UNK>": 1, "deep": 2})
    encoded = tokenizer("deep", "deep deep", padding="max_length", return_tensors="pt")
    assert encoded["title_input_ids"].shape == (1, 30)
    assert encoded["abstract_input_ids"].shape == (1, 200)
    assert encoded["abstract_attention_mask"].sum() == 2


def test_pad_to_multiple_of_rounds_each_field_up(tiny_tokenizer):
    encoded = tiny_tokenizer(["deep networks"], ["a b c d e"], padding=True, pad_to_multiple_of=4)
    assert len(encoded["title_input_ids"][0]) == 4
    assert len(encoded["abstract_input_ids"][0]) == 8


def test_single_pair_encodes_like_a_batch_of_one(tiny_tokenizer):
    title, abstract = "Attention is all you need", "We propose a new network architecture"
    single = tiny_tokenizer(title, abstract)
    batch = tiny_tokenizer([title], [abstract])
    assert (
        single.keys()
        == batch.keys()
        == {"title_input_ids", "title_attention_mask", "abstract_input_ids", "abstract_attention_mask"}
    )
    for key in single:
        assert single[key] == batch[key][0]
    as_tensors = tiny_tokenizer(title, abstract, return_tensors="pt")
    assert as_tensors["title_input_ids"].tolist() == batch["title_input_ids"]


def test_title_only_gives_an_empty_abstract(tiny_tokenizer):
    encoded = tiny_tokenizer(["deep networks", "attention"], padding=True, return_tensors="pt")
    assert encoded["title_input_ids"].shape == (2, 2)
    assert encoded["abstract_input_ids"].shape == (2, 0)
    assert encoded["abstract_attention_mask"].shape == (2, 0)
    abstract_only = tiny_tokenizer(text_pair="deep networks")
    assert abstract_only["title_input_ids"] == [] and len(abstract_only["abstract_input_ids"]) == 2


# --- errors ---


def test_mismatched_numbers_of_titles_and_abstracts_raise(tiny_tokenizer):
    with pytest.raises(ValueError, match="1 titles but 2 abstracts"):
        tiny_tokenizer(["deep"], ["networks", "attention"])


def test_max_length_argument_is_rejected_with_a_pointer_to_the_field_lengths(tiny_tokenizer):
    with pytest.raises(TypeError, match="max_title_length"):
        tiny_tokenizer("deep", "networks", max_length=4)
    with pytest.raises(ValueError, match="max_title_length"):
        tiny_tokenizer.pad([tiny_tokenizer("deep", "networks")], max_length=4)


@pytest.mark.parametrize("bad", [3, ["deep", 3], None])
def test_non_string_input_raises(tiny_tokenizer, bad):
    with pytest.raises((TypeError, ValueError)):
        tiny_tokenizer(bad)


def test_left_padding_is_refused(tiny_tokenizer, monkeypatch):
    monkeypatch.setattr(tiny_tokenizer, "padding_side", "left")
    with pytest.raises(ValueError, match="right"):
        tiny_tokenizer.pad([tiny_tokenizer("deep", "networks")])


# --- collating ---


def test_pad_on_examples_pads_both_fields_and_passes_labels(tiny_tokenizer):
    examples = [
        {**tiny_tokenizer("deep networks", "we train deep networks"), "label": 1},
        {**tiny_tokenizer("attention", "language"), "label": 2},
    ]
    batch = tiny_tokenizer.pad(examples, return_tensors="pt")
    deep, networks = tiny_tokenizer.convert_tokens_to_ids(["deep", "networks"])
    attention, language = tiny_tokenizer.convert_tokens_to_ids(["attention", "language"])
    assert batch["title_input_ids"].tolist() == [[deep, networks], [attention, 0]]
    assert batch["title_attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["abstract_input_ids"][1].tolist() == [language, 0, 0, 0]
    assert batch["abstract_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch["label"].tolist() == [1, 2]


@pytest.mark.parametrize("row_type", [list, torch.tensor], ids=["lists", "tensors"])
def test_data_collator_with_padding_batches_unpadded_features(tiny_tokenizer, row_type):
    titles = ["deep networks", "attention is all you need", "graph"]
    abstracts = ["language", "we train deep networks on image classes", "molecule"]
    encoded = tiny_tokenizer(titles, abstracts)
    features = [  # what a datasets.Dataset mapped with the tokenizer yields, as lists or torch-formatted
        {key: row_type(encoded[key][i]) for key in encoded} | {"label": label} for i, label in enumerate([0, 2, 1])
    ]
    batch = DataCollatorWithPadding(tiny_tokenizer)(features)
    expected = tiny_tokenizer(titles, abstracts, padding=True, return_tensors="pt")
    for key in expected:
        assert torch.equal(batch[key], expected[key]), key
    assert batch["labels"].tolist() == [0, 2, 1]


# --- saving ---


def test_save_and_reload_keeps_vocab_lengths_and_encoding(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    assert "vocab.txt" not in names
    assert not [name for name in names if name.endswith((".pkl", ".pickle", ".bin", ".pt", ".model"))]

    titles = ["Solving the Schrödinger equation", "Zebra crossings, deep NETWORKS & more words than eight"]
    abstracts = ["Graph neural networks predict molecule properties from their structure " * 3, "x"]
    expected = tiny_tokenizer(titles, abstracts, padding=True)
    for reloaded in (HybridCNNLSTMTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(reloaded, HybridCNNLSTMTokenizer)
        assert reloaded.get_vocab() == tiny_tokenizer.get_vocab()
        assert (reloaded.max_title_length, reloaded.max_abstract_length) == (8, 16)
        assert (reloaded.pad_token_id, reloaded.unk_token_id) == (0, 1)
        assert dict(reloaded(titles, abstracts, padding=True)) == dict(expected)
        assert reloaded.split_words(titles[0], "title") == tiny_tokenizer.split_words(titles[0], "title")
