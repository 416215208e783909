"""Word-level tokenizer of the hybrid CNN-LSTM classifier, built on the `tokenizers` library.

Words are nearly what the research notebook called words: accents stripped, lower-cased, every character outside
``[a-z0-9]`` and whitespace replaced by a space, then split on whitespace (the notebook also kept ``-``, so ``error-
correction`` was one word; a tokenizer saved that way keeps its rule). Title and abstract are encoded separately,
each with its own maximum length, into exactly the tensors the model's ``forward`` takes.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only ``transformers``
(and the ``tokenizers`` library that ``transformers`` itself depends on) and its sibling configuration file, whose
defaults it shares.
"""

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from transformers import BatchEncoding, TokenizersBackend

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
    trained with. ``padding=True`` pads each field to its longest item in the batch,
    ``padding="max_length"`` to its maximum length. Padding is always on the right.

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

    def __call__(
        self,
        text: str | list[str] | None = None,
        text_pair: str | list[str] | None = None,
        padding: bool | str = False,
        truncation: bool = True,
        return_tensors: str | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool = True,
        **kwargs,
    ) -> BatchEncoding:
        """Encodes titles (`text`) and abstracts (`text_pair`); either may be left out for an empty field."""
        kwargs.pop("add_special_tokens", None)  # this tokenizer adds none
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} does not take {sorted(kwargs)}; it truncates titles to `max_title_length` "
                "and abstracts to `max_abstract_length`, which you can set on the tokenizer"
            )
        if text is None and text_pair is None:
            raise ValueError("Give a title (`text`), an abstract (`text_pair`), or both")
        single = isinstance(text, str) or isinstance(text_pair, str)
        titles, abstracts = (_as_batch(field, single) for field in (text, text_pair))
        if titles is None:
            titles = [""] * len(abstracts)
        if abstracts is None:
            abstracts = [""] * len(titles)
        if len(titles) != len(abstracts):
            raise ValueError(f"Got {len(titles)} titles but {len(abstracts)} abstracts")

        features = {}
        for field, texts in zip(FIELDS, (titles, abstracts)):
            ids = [encoding.ids for encoding in self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
            if truncation:
                ids = [row[: self._max_length(field)] for row in ids]
            features[f"{field}_input_ids"] = ids
            if return_attention_mask:
                features[f"{field}_attention_mask"] = [[1] * len(row) for row in ids]

        if padding not in (False, "do_not_pad"):
            encoded = self.pad(features, padding=padding, pad_to_multiple_of=pad_to_multiple_of)
            features = dict(encoded)
        if single:
            features = {key: value[0] for key, value in features.items()}
        return BatchEncoding(features, tensor_type=return_tensors, prepend_batch_axis=single)

    def pad(
        self,
        encoded_inputs,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """Pads titles and abstracts of a batch, each field to its own length.

        Takes a list of examples (as a data collator does) or a dict of lists; other keys, such as
        `labels`, pass through. `padding=True`/`"longest"` pads to the longest item of each field,
        `"max_length"` to `max_title_length`/`max_abstract_length`. (`max_length` is there for the data
        collators, which pass `max_length=None`.)
        """
        if max_length is not None:
            raise ValueError(
                "Titles and abstracts have their own lengths: set `max_title_length`/`max_abstract_length`"
            )
        if self.padding_side != "right":
            raise ValueError(
                "The model reads each field from its first word up to its length: padding must be on the right"
            )
        if isinstance(encoded_inputs, (list, tuple)):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        batch = dict(encoded_inputs)
        if padding not in (False, "do_not_pad"):
            for field in FIELDS:
                rows = [list(row) for row in batch[f"{field}_input_ids"]]
                if padding == "max_length":
                    length = self._max_length(field)
                elif padding in (True, "longest"):
                    length = max((len(row) for row in rows), default=0)
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
