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


def test_a_text_alone_is_read_whole_its_first_sentence_as_the_title(tiny_tokenizer):
    text = "Deep networks for image classes. We train deep convolutional networks on image classes"
    alone = tiny_tokenizer(text)
    assert alone == tiny_tokenizer("Deep networks for image classes.", text)
    assert tiny_tokenizer.split_text(text) == ("Deep networks for image classes.", text)
    words = tiny_tokenizer.convert_ids_to_tokens(alone["abstract_input_ids"])
    assert words == tiny_tokenizer.split_words(text)  # every word, up to the abstract's 16
    # So is a title with an empty abstract; an abstract without a title, and a paper of both, are read as given.
    assert tiny_tokenizer(["deep networks", "attention"], ["", "  "]) == tiny_tokenizer(["deep networks", "attention"])
    abstract_alone = tiny_tokenizer(text_pair=text)
    assert (
        abstract_alone["title_input_ids"] == [] and abstract_alone["abstract_input_ids"] == alone["abstract_input_ids"]
    )
    assert tiny_tokenizer("deep", "networks")["abstract_input_ids"] == tiny_tokenizer.convert_tokens_to_ids(
        ["networks"]
    )


def test_the_first_sentence_ends_at_a_line_break_or_an_end_mark_and_a_space(tiny_tokenizer):
    assert tiny_tokenizer.split_text("Attention is all you need\nWe propose a model.")[0] == "Attention is all you need"
    assert tiny_tokenizer.split_text("  Is attention all? Yes. We propose")[0] == "Is attention all?"
    assert tiny_tokenizer.split_text("3.5 billion parameters. Then")[0] == "3.5 billion parameters."
    assert tiny_tokenizer.split_text("no end mark at all") == ("no end mark at all", "no end mark at all")


def test_every_word_of_a_text_alone_is_read_up_to_the_abstracts_length(tiny_tokenizer):
    text = " ".join(["deep"] * 10 + ["language"] * 10)  # one "sentence" longer than the title's 8 words
    encoded = tiny_tokenizer(text)
    assert tiny_tokenizer.convert_ids_to_tokens(encoded["title_input_ids"]) == ["deep"] * 8
    assert tiny_tokenizer.convert_ids_to_tokens(encoded["abstract_input_ids"]) == ["deep"] * 10 + ["language"] * 6


def test_read_fields_gives_what_the_model_reads_of_a_paper(tiny_tokenizer):
    assert tiny_tokenizer.read_fields("Deep networks. More", None) == ("Deep networks.", "Deep networks. More")
    assert tiny_tokenizer.read_fields("Deep networks. More", " ") == ("Deep networks.", "Deep networks. More")
    assert tiny_tokenizer.read_fields("", "Deep networks. More") == ("", "Deep networks. More")
    assert tiny_tokenizer.read_fields("Deep networks", "for images") == ("Deep networks", "for images")
    assert tiny_tokenizer.read_fields("", "") == ("", "")


# --- the arguments of the standard tokenizer call ---


def test_max_length_caps_each_field_below_its_own_length(tiny_tokenizer):
    long_text = " ".join(["deep"] * 40)
    capped = tiny_tokenizer([long_text], [long_text], truncation=True, max_length=12)
    assert len(capped["title_input_ids"][0]) == 8 and len(capped["abstract_input_ids"][0]) == 12
    assert tiny_tokenizer([long_text], [long_text], max_length=512) == tiny_tokenizer([long_text], [long_text])
    padded = tiny_tokenizer(["deep"], ["language"], padding="max_length", max_length=12, truncation=True)
    assert len(padded["title_input_ids"][0]) == 8 and len(padded["abstract_input_ids"][0]) == 12
    assert padded["abstract_attention_mask"][0] == [1] + [0] * 11


def test_model_max_length_is_the_longer_fields_length(tiny_tokenizer, tmp_path):
    assert tiny_tokenizer.model_max_length == 16
    tiny_tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).model_max_length == 16


def test_a_max_length_below_the_trained_lengths_is_warned_about_once(tiny_tokenizer, caplog):
    from transformers.utils import logging

    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            tiny_tokenizer("deep", "language", truncation=True, max_length=5)
            tiny_tokenizer("deep", "language", truncation=True, max_length=5)
    finally:
        logging.disable_propagation()
    warnings = [r.message for r in caplog.records if "max_length=5" in r.message]
    assert warnings == [
        "max_length=5 cuts titles to 5 and abstracts to 5 words; the model was trained on up to 8 and 16 "
        "(a larger max_length reads them all)"
    ]


def test_standard_arguments_that_ask_for_nothing_more_are_taken(tiny_tokenizer):
    plain = tiny_tokenizer(["deep networks"], ["language"], padding=True, return_tensors="pt")
    standard = tiny_tokenizer(
        ["deep networks"],
        ["language"],
        padding="longest",
        truncation="longest_first",
        return_tensors="pt",
        add_special_tokens=True,
        return_token_type_ids=False,
        return_overflowing_tokens=False,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        stride=0,
        padding_side="right",
        verbose=False,
        tokenizer_kwargs={"pad_to_multiple_of": None},
    )
    assert standard.keys() == plain.keys()
    for key in plain:
        assert torch.equal(standard[key], plain[key])
    assert tiny_tokenizer("deep", tokenizer_kwargs={"truncation": False}) == tiny_tokenizer("deep", truncation=False)


@pytest.mark.parametrize(
    ("argument", "value", "reason"),
    [
        ("return_token_type_ids", True, "no token type ids"),
        ("return_overflowing_tokens", True, "not split into windows"),
        ("stride", 4, "not split into windows"),
        ("return_offsets_mapping", True, "normalised"),
        ("return_special_tokens_mask", True, "no special tokens"),
        ("return_length", True, "attention mask"),
        ("is_split_into_words", True, "give the texts"),
        ("padding_side", "left", "padding is on the right"),
        ("text_target", "deep", "no text targets"),
    ],
)
def test_what_a_two_field_word_model_cannot_honour_is_refused_with_the_reason(tiny_tokenizer, argument, value, reason):
    with pytest.raises(ValueError, match=f"cannot take {argument}={value!r}: .*{reason}"):
        tiny_tokenizer("deep", "networks", **{argument: value})


def test_unknown_arguments_and_meaningless_combinations_are_refused(tiny_tokenizer):
    with pytest.raises(TypeError, match="unexpected argument 'max_title'"):
        tiny_tokenizer("deep", max_title=4)
    with pytest.raises(ValueError, match="only_first"):
        tiny_tokenizer("deep", "networks", truncation="only_first")
    with pytest.raises(ValueError, match="pass truncation=True, or drop max_length"):
        tiny_tokenizer("deep", "networks", truncation=False, max_length=4)
    with pytest.raises(ValueError, match="positive number of words"):
        tiny_tokenizer("deep", "networks", max_length=0)


def test_pad_to_max_length_never_cuts(tiny_tokenizer):
    features = [tiny_tokenizer("deep networks attention", "language", truncation=False)]
    batch = tiny_tokenizer.pad(features, padding="max_length", max_length=2)
    assert batch["title_input_ids"][0] == tiny_tokenizer.convert_tokens_to_ids(["deep", "networks", "attention"])
    assert len(batch["abstract_input_ids"][0]) == 2


# --- errors ---


def test_mismatched_numbers_of_titles_and_abstracts_raise(tiny_tokenizer):
    with pytest.raises(ValueError, match="1 titles but 2 abstracts"):
        tiny_tokenizer(["deep"], ["networks", "attention"])


@pytest.mark.parametrize("bad", [3, ["deep", 3], None])
def test_non_string_input_raises(tiny_tokenizer, bad):
    with pytest.raises((TypeError, ValueError)):
        tiny_tokenizer(bad)


def test_left_padding_is_refused(tiny_tokenizer, monkeypatch):
    with pytest.raises(ValueError, match="right"):
        tiny_tokenizer.pad([tiny_tokenizer("deep", "networks")], padding_side="left")
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
