"""Word-level tokenizer of the hybrid CNN-LSTM classifier, built on the `tokenizers` library.

Words are nearly what the research notebook called words: accents stripped, lower-cased, every character outside
``[a-z0-9]`` and whitespace replaced by a space, then split on whitespace (the notebook also kept ``-``, so ``error-
correction`` was one word; a tokenizer saved that way keeps its rule). Title and abstract are encoded separately,
each with its own maximum length, into exactly the tensors the model's ``forward`` takes; a text given alone is read
whole, its first sentence as the title and all of it as the abstract. The tokenizer takes the arguments of the
standard tokenizer call, each with a meaning for two fields, and refuses, with the reason, those it cannot honour.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only ``transformers``
(and the ``tokenizers`` library that ``transformers`` itself depends on), the standard library's ``re`` and its
sibling configuration file, whose defaults it shares.
"""

import re
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from transformers import BatchEncoding, TokenizersBackend
from transformers.utils import logging

from .configuration_hybrid_cnn_lstm import MIN_VOCAB_SIZE, HybridCNNLSTMConfig

PAD_TOKEN = "<PAD>"
UNK_TOKEN = "<UNK>"
FIELDS = ("title", "abstract")
# After lower-casing, every character that is not a letter or a digit becomes a space. (The research notebook kept
# hyphenated words whole; split, as TF-IDF splits them, the wide branch scores about a point better on a few hundred
# papers. A saved tokenizer.json keeps the rule it was trained with.)
NON_WORD_CHARACTER = r"[^a-z0-9\s]"
# Words seen fewer times than this in the training texts become <UNK>, unless `train_from_iterator` is told otherwise.
MIN_FREQUENCY = 1
# Where the first sentence of a text given alone ends: a line break, or a sentence's end mark and a space.
SENTENCE_END = re.compile(r"\n|(?<=[.?!])\s")
# Arguments of the standard tokenizer call that a two-field word model cannot honour: each is taken at the values
# that ask for nothing, and refused, with the reason, at any other.
ONLY_AT_DEFAULT = {
    "return_token_type_ids": (
        (None, False),
        "the model has no token type ids: title and abstract are inputs of their own",
    ),
    "return_overflowing_tokens": ((False,), "a field longer than its maximum length is cut, not split into windows"),
    "stride": ((0,), "a field longer than its maximum length is cut, not split into windows"),
    "return_special_tokens_mask": ((False,), "the tokenizer adds no special tokens"),
    "return_offsets_mapping": ((False,), "the words are normalised (accents stripped) before they are split"),
    "return_length": ((False,), "each field has its own length: read it from its attention mask"),
    "is_split_into_words": ((False,), "give the texts, which the tokenizer splits into the model's words"),
    "split_special_tokens": ((False,), "the tokenizer adds no special tokens"),
    "padding_side": ((None, "right"), "the model reads each field from its first word: padding is on the right"),
    "text_target": ((None,), "the model has no text targets"),
    "text_pair_target": ((None,), "the model has no text targets"),
}

logger = logging.get_logger(__name__)


def build_word_tokenizer(vocab: dict[str, int], unk_token: str = UNK_TOKEN) -> Tokenizer:
    """A `tokenizers.Tokenizer` that turns text into the notebook's words, then into ids of `vocab`."""
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=unk_token))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKD(),
            normalizers.StripAccents(),
            normalizers.Lowercase(),
            normalizers.Replace(Regex(NON_WORD_CHARACTER), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


class HybridCNNLSTMTokenizer(TokenizersBackend):
    r"""Encodes (title, abstract) pairs for [`HybridCNNLSTMForSequenceClassification`].

    Call it like any pair tokenizer, ``tok(titles, abstracts, padding=True, return_tensors="pt")``, and
    it returns ``title_input_ids``, ``title_attention_mask``, ``abstract_input_ids`` and
    ``abstract_attention_mask``. Truncation is on by default: titles keep at most
    ``max_title_length`` words and abstracts ``max_abstract_length``, the lengths the model was
    trained with (``max_length`` lowers both). ``padding=True`` pads each field to its longest item in the
    batch, ``padding="max_length"`` to its maximum length. Padding is always on the right. A text given alone,
    ``tok(texts)``, is read whole: its first sentence as the title and all of it as the abstract (`split_text`);
    so is a title whose abstract has no words. `model_max_length` is the longer field's maximum length.

    Example:

    ```python
    >>> from hf_hybrid import HybridCNNLSTMTokenizer
    >>> tok = HybridCNNLSTMTokenizer.train_from_iterator(["Deep nets", "Deep Schrödinger nets"], min_frequency=1)
    >>> batch = tok(["Deep nets!"], ["Schrödinger error-correction"], padding=True, return_tensors="pt")
    >>> tok.convert_ids_to_tokens(batch["title_input_ids"][0].tolist())
    ['deep', 'nets']
    >>> tok.convert_ids_to_tokens(batch["abstract_input_ids"][0].tolist())
    ['schrodinger', '<UNK>', '<UNK>']
    ```
    """

    model = WordLevel
    model_input_names = ["title_input_ids", "title_attention_mask", "abstract_input_ids", "abstract_attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        unk_token: str = UNK_TOKEN,
        pad_token: str = PAD_TOKEN,
        max_title_length: int = HybridCNNLSTMConfig.max_title_length,
        max_abstract_length: int = HybridCNNLSTMConfig.max_abstract_length,
        **kwargs,
    ):
        for name, value in (("max_title_length", max_title_length), ("max_abstract_length", max_abstract_length)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if vocab is None and kwargs.get("name_or_path"):
            # Loaded from a folder or repo without tokenizer.json: every word would become <UNK>. (Not an
            # OSError: `transformers` replaces those with a message that does not name the file.)
            raise ValueError(f"{kwargs['name_or_path']} has no tokenizer.json: re-download or re-save the model")
        self.max_title_length = max_title_length
        self.max_abstract_length = max_abstract_length
        # The most words the model reads of one field: scripts cap their `max_length` at it.
        kwargs["model_max_length"] = max(max_title_length, max_abstract_length)
        # Loading from `tokenizer.json` hands the base class the file, which then replaces this backend.
        self._tokenizer = build_word_tokenizer(vocab or {str(pad_token): 0, str(unk_token): 1}, str(unk_token))
        super().__init__(
            unk_token=unk_token,
            pad_token=pad_token,
            max_title_length=max_title_length,
            max_abstract_length=max_abstract_length,
            **kwargs,
        )

    @classmethod
    def train_from_iterator(
        cls,
        texts: Iterable[str],
        vocab_size: int = HybridCNNLSTMConfig.vocab_size,
        min_frequency: int = MIN_FREQUENCY,
        show_progress: bool = False,
        **kwargs,
    ) -> "HybridCNNLSTMTokenizer":
        """Learns the vocabulary (the `vocab_size` most frequent words seen `min_frequency` times or more,
        `<PAD>` and `<UNK>` included) from `texts` with the `tokenizers` trainer.

        Other keyword arguments (e.g. `max_title_length`) go to the constructor.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"`vocab_size` must be at least {MIN_VOCAB_SIZE} ({PAD_TOKEN}, {UNK_TOKEN} and one word), "
                f"got {vocab_size}"
            )
        backend = build_word_tokenizer({}, UNK_TOKEN)
        trainer = WordLevelTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD_TOKEN, UNK_TOKEN],
            show_progress=show_progress,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(vocab=backend.get_vocab(), **kwargs)

    def check_fits(self, config) -> None:
        """Raises `ValueError` unless this tokenizer's word ids are the rows of the embedding of a model with
        `config`: a tokenizer and weights of different models would classify nonsense without a word."""
        if len(self) != config.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(self)} words but the model's embedding has {config.vocab_size} "
                "(vocab_size in config.json): they come from different models; re-download or re-save the model"
            )

    def _max_length(self, field: str) -> int:
        return self.max_title_length if field == "title" else self.max_abstract_length

    def split_words(self, text: str, field: str = "abstract") -> list[str]:
        """The words of `text` that the model reads at each position of `field` ("title" or "abstract"),
        out-of-vocabulary words included as written."""
        if field not in FIELDS:
            raise ValueError(f"`field` must be one of {FIELDS}, got {field!r}")
        normalized = self._tokenizer.normalizer.normalize_str(text)
        words = [word for word, _ in self._tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]
        return words[: self._max_length(field)]

    def split_text(self, text: str) -> tuple[str, str]:
        """The (title, abstract) that the model reads for `text` given alone: its first sentence (up to the first
        line break, or the first `.`, `?` or `!` followed by a space), of which the title keeps `max_title_length`
        words, and the whole text as the abstract, which keeps `max_abstract_length`. Read so, a title and abstract
        joined into one text are classified as well as given apart, and a title or an abstract alone better than as
        that one field (hf-hybrid's docs/works_with.md has the figures)."""
        text = text.strip()
        end = SENTENCE_END.search(text)
        return (text[: end.start()] if end else text), text

    def read_fields(self, title: str | None, abstract: str | None) -> tuple[str, str]:
        """The (title, abstract) that the model reads for a paper: as given, unless the title has words and the
        abstract none: such a title is a text given alone, read whole (`split_text`). (An abstract without a title
        is read as given.)"""
        title, abstract = title or "", abstract or ""
        if self.split_words(title) and not self.split_words(abstract):
            return self.split_text(title)
        return title, abstract

    def __call__(self, text: str | list[str] | None = None, text_pair: str | list[str] | None = None, **options):
        """Encodes titles (`text`) and abstracts (`text_pair`), taking the arguments of any `transformers` tokenizer
        call (`tokenizer_kwargs` too): see `encode_papers`."""
        options = {**(options.pop("tokenizer_kwargs", None) or {}), **options}
        return self.encode_papers(text, text_pair, **options)

    def encode_papers(
        self,
        text: str | list[str] | None = None,
        text_pair: str | list[str] | None = None,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        add_special_tokens: bool = True,
        verbose: bool = True,
        **unsupported,
    ) -> BatchEncoding:
        """Encodes titles (`text`) and abstracts (`text_pair`); either may be left out.

        A title whose abstract has no words (a text given alone, as pipelines and fine-tuning scripts give one) is
        read whole: its first sentence as the title, all of it as the abstract (`split_text`).

        `truncation` (on unless False or `"do_not_truncate"`) cuts each field to its maximum length; `max_length`
        lowers both: a field keeps at most `min(max_length, max_title_length)` or `min(max_length,
        max_abstract_length)` words. `padding` is as in `pad`. `add_special_tokens` changes nothing (the model reads
        words only); `verbose=False` silences the warning given when `max_length` is below the lengths the model was
        trained with. What a two-field word model cannot give (token type ids, overflowing windows, offsets, left
        padding...) is refused with the reason.
        """
        _refuse_unsupported(unsupported)
        if text is None and text_pair is None:
            raise ValueError("Give a title (`text`), an abstract (`text_pair`), or both")
        if max_length is not None and not (isinstance(max_length, int) and max_length > 0):
            raise ValueError(f"`max_length` must be a positive number of words, got {max_length!r}")
        truncate = _truncates(truncation)
        if max_length is not None and not truncate and padding != "max_length":
            raise ValueError(
                "`max_length` limits the fields only with truncation or padding='max_length': "
                "pass truncation=True, or drop max_length"
            )
        single = isinstance(text, str) or isinstance(text_pair, str)
        titles, abstracts = (_as_batch(field, single) for field in (text, text_pair))
        if titles is None:
            titles = [""] * len(abstracts)
        if abstracts is None:
            abstracts = [""] * len(titles)
        if len(titles) != len(abstracts):
            raise ValueError(f"Got {len(titles)} titles but {len(abstracts)} abstracts")

        ids = {"title": self._encode(titles), "abstract": self._encode(abstracts)}
        alone = [i for i in range(len(titles)) if ids["title"][i] and not ids["abstract"][i]]
        first_sentences = self._encode([self.split_text(titles[i])[0] for i in alone])
        for i, first_sentence in zip(alone, first_sentences):
            ids["title"][i], ids["abstract"][i] = first_sentence, ids["title"][i]
        lengths = self._field_lengths(max_length, verbose)
        features = {}
        for field in FIELDS:
            rows = [row[: lengths[field]] for row in ids[field]] if truncate else ids[field]
            features[f"{field}_input_ids"] = rows
            if return_attention_mask is not False:
                features[f"{field}_attention_mask"] = [[1] * len(row) for row in rows]

        if padding not in (False, "do_not_pad"):
            padded = self.pad(
                features, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of, verbose=False
            )
            features = dict(padded)
        if single:
            features = {key: value[0] for key, value in features.items()}
        return BatchEncoding(features, tensor_type=return_tensors, prepend_batch_axis=single)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def _field_lengths(self, max_length: int | None, verbose: bool = True) -> dict[str, int]:
        """The most words each field keeps: its maximum length, or `max_length` when that is lower."""
        lengths = {field: self._max_length(field) for field in FIELDS}
        if max_length is None:
            return lengths
        if verbose and max_length < max(lengths.values()):
            logger.warning_once(
                f"max_length={max_length} cuts titles to {min(max_length, lengths['title'])} and abstracts to "
                f"{min(max_length, lengths['abstract'])} words; the model was trained on up to "
                f"{lengths['title']} and {lengths['abstract']} (a larger max_length reads them all)"
            )
        return {field: min(max_length, length) for field, length in lengths.items()}

    def pad(
        self,
        encoded_inputs,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pads titles and abstracts of a batch, each field to its own length.

        Takes a list of examples (as a data collator does) or a dict of lists; other keys, such as
        `labels`, pass through. `padding=True`/`"longest"` pads to the longest item of each field,
        `"max_length"` to `max_title_length`/`max_abstract_length` (or to `max_length`, when that is lower);
        nothing is cut. Padding is on the right (`padding_side`), as the model reads each field from its first word.
        """
        if (padding_side or self.padding_side) != "right":
            raise ValueError(
                "The model reads each field from its first word up to its length: padding must be on the right"
            )
        if isinstance(encoded_inputs, (list, tuple)):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        batch = dict(encoded_inputs)
        if padding not in (False, "do_not_pad"):
            lengths = self._field_lengths(max_length, verbose)
            for field in FIELDS:
                rows = [list(row) for row in batch[f"{field}_input_ids"]]
                longest = max((len(row) for row in rows), default=0)
                if padding == "max_length":
                    length = max(lengths[field], longest)
                elif padding in (True, "longest"):
                    length = longest
                else:
                    raise ValueError(f"`padding` must be True, 'longest', 'max_length' or False, got {padding!r}")
                if pad_to_multiple_of:
                    length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
                batch[f"{field}_input_ids"] = [row + [self.pad_token_id] * (length - len(row)) for row in rows]
                if return_attention_mask is not False:
                    batch[f"{field}_attention_mask"] = [[1] * len(row) + [0] * (length - len(row)) for row in rows]
        return BatchEncoding(batch, tensor_type=return_tensors)


def _as_batch(texts, single):
    if texts is None:
        return None
    if single:
        if not isinstance(texts, str):
            raise ValueError("Give one title and one abstract as strings, or lists of both")
        return [texts]
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ValueError("Titles and abstracts must be strings or lists of strings")
    return list(texts)


def _truncates(truncation) -> bool:
    if truncation in (None, True, "longest_first"):
        return True
    if truncation in (False, "do_not_truncate"):
        return False
    raise ValueError(
        f"`truncation` must be True, False, 'longest_first' or 'do_not_truncate', got {truncation!r}: "
        "each field is cut to its own length ('only_first'/'only_second' have no meaning here)"
    )


def _refuse_unsupported(arguments: dict) -> None:
    for name, value in arguments.items():
        if name not in ONLY_AT_DEFAULT:
            raise TypeError(f"HybridCNNLSTMTokenizer got an unexpected argument {name!r}")
        accepted, reason = ONLY_AT_DEFAULT[name]
        if not any(value is default or value == default for default in accepted):
            raise ValueError(f"HybridCNNLSTMTokenizer cannot take {name}={value!r}: {reason}")
