"""Word vectors that start the embedding: learned from the training split (word2vec), or read from a file.

A random embedding has to learn 15 M weights from the labels alone; vectors learned without labels from the
same training text give every vocabulary word a meaningful start (and keep the test split unseen). The
vectors end up in the model's weights: nothing is shipped besides `model.safetensors`.

Example:

```python
>>> from hf_hybrid import HybridCNNLSTMTokenizer
>>> from hf_hybrid.word_vectors import train_word2vec, training_word_ids
>>> texts = ["deep networks for images", "deep networks for language"] * 50
>>> tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(texts, min_frequency=1)
>>> vectors = train_word2vec(training_word_ids(tokenizer, texts), dimension=8, seed=0)
>>> vectors.vectors.shape[1], vectors.parameters["algorithm"]
(8, 'skip-gram')
```
"""

import gzip
import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

logger = logging.getLogger(__name__)

RANDOM = "random"
WORD2VEC = "word2vec"
# Skip-gram with negative sampling, as the probe used; one worker, so the same seed gives the same vectors.
WORD2VEC_PARAMETERS = {
    "algorithm": "skip-gram",
    "window": 5,
    "negative": 5,
    "epochs": 5,
    "min_count": 1,
    "sample": 1e-4,
    "workers": 1,
}


class WordVectorError(UserError):
    """Word vectors cannot be used as given; the message names the file and line."""


@dataclass
class WordVectors:
    """Vectors by vocabulary id (`ids[i]` has `vectors[i]`), where they came from and how they were made."""

    ids: np.ndarray
    vectors: np.ndarray
    source: str
    parameters: dict = field(default_factory=dict)


def training_word_ids(tokenizer, texts: Iterable[str]) -> list[list[int]]:
    """Each text's word ids, untruncated, split exactly as the model's tokenizer splits them."""
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
    return [encoding.ids for encoding in encodings]


def token_counts(word_ids: list[list[int]], vocab_size: int) -> np.ndarray:
    """How often each vocabulary id occurs in `word_ids`."""
    flat = np.fromiter((i for row in word_ids for i in row), dtype=np.int64)
    return np.bincount(flat, minlength=vocab_size)


def train_word2vec(word_ids: list[list[int]], dimension: int, seed: int) -> WordVectors:
    """Skip-gram vectors of `dimension` for every vocabulary id in `word_ids` (`<UNK>` included: it stands for
    the rare words), learned with `gensim` on the tokenizer's own words (see `training_word_ids`)."""
    try:
        from gensim.models import Word2Vec
    except ImportError as error:
        raise ImportError("--init_embeddings word2vec needs gensim: pip install gensim") from error

    sentences = [[str(i) for i in row] for row in word_ids if row]
    parameters = {**WORD2VEC_PARAMETERS, "dimension": dimension, "seed": seed}
    started = time.perf_counter()
    model = Word2Vec(
        sentences,
        vector_size=dimension,
        sg=1,
        window=parameters["window"],
        negative=parameters["negative"],
        epochs=parameters["epochs"],
        min_count=parameters["min_count"],
        sample=parameters["sample"],
        workers=parameters["workers"],
        seed=seed,
        hashfxn=_stable_hash,
    )
    parameters["seconds"] = round(time.perf_counter() - started, 1)
    parameters["training_tokens"] = sum(len(sentence) for sentence in sentences)
    keys = model.wv.index_to_key
    return WordVectors(np.array([int(key) for key in keys]), model.wv.vectors[: len(keys)].copy(), WORD2VEC, parameters)


def _stable_hash(text: str) -> int:
    # gensim seeds each word's starting vector from a hash of the word; Python's own str hash changes per process.
    return zlib.crc32(text.encode())


def read_word_vectors(path: str | Path, tokenizer, dimension: int) -> WordVectors:
    """Vectors from a word2vec or GloVe text file (`word v1 ... vD` per line; word2vec's `count D` header line is
    optional), for the words of the tokenizer's vocabulary.

    File words are normalised as the tokenizer normalises text (`Schrödinger` -> `schrodinger`); the first
    vector of a word wins. A line that is not a word and `dimension` numbers is an error naming the line, and so
    is a file that gives no vocabulary word a vector. A gzipped file (`vectors.txt.gz`) is read as its text.
    """
    path = Path(path)
    if not path.is_file():
        raise WordVectorError(f"{path}: no such file of word vectors")
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"  # gzip's magic bytes, whatever the file's name
    vocab = tokenizer.get_vocab()
    found: dict[int, np.ndarray] = {}
    vectors_read = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") if compressed else path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(part.isdigit() for part in parts):
                    if int(parts[1]) != dimension:
                        raise WordVectorError(
                            f"{path}:1: vectors of dimension {parts[1]}, but the model's embed_dim is {dimension}"
                        )
                    continue
                if not line.strip():
                    continue
                if len(parts) != dimension + 1:
                    raise WordVectorError(
                        f"{path}:{number}: expected a word and {dimension} numbers (the model's embed_dim), "
                        f"got {len(parts) - 1} value(s)"
                    )
                try:
                    vector = np.array(parts[1:], dtype=np.float32)
                except ValueError:
                    raise WordVectorError(
                        f"{path}:{number}: the values after {parts[0]!r} are not all numbers"
                    ) from None
                if not np.isfinite(vector).all():
                    raise WordVectorError(f"{path}:{number}: the vector of {parts[0]!r} is not finite")
                vectors_read += 1
                words = tokenizer.split_words(parts[0])
                if len(words) == 1 and words[0] in vocab and vocab[words[0]] not in found:
                    found[vocab[words[0]]] = vector
    except UnicodeDecodeError as error:
        raise WordVectorError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise WordVectorError(f"{path}: a damaged gzip file ({error}): download it again") from None
    if not found:
        what = (
            f"holds {vectors_read:,} vectors, none of them of a vocabulary word"
            if vectors_read
            else "is empty: it holds no vectors"
        )
        raise WordVectorError(
            f"{path}: {what}, so every word would start random: give a word2vec/GloVe text file of words of the "
            "training papers' language, or --init_embeddings word2vec (learned from the training papers)"
        )
    ids = np.array(sorted(found), dtype=np.int64)
    vectors = np.stack([found[i] for i in ids]) if found else np.zeros((0, dimension), np.float32)
    return WordVectors(ids, vectors, str(path), {"file": str(path), "dimension": dimension})


def initialise_embedding(
    embedding: torch.nn.Embedding, vectors: WordVectors, token_counts: np.ndarray, pad_token_id: int
) -> dict:
    """Copies `vectors` into the embedding rows of their words; the other rows keep their random start, rescaled
    to the vectors' mean norm so that neither kind dominates. Returns the coverage: the share of vocabulary words,
    and of training tokens (`token_counts` by id), that got a vector."""
    if vectors.vectors.shape[1] != embedding.embedding_dim:
        raise WordVectorError(
            f"{vectors.source}: vectors of dimension {vectors.vectors.shape[1]}, embed_dim is {embedding.embedding_dim}"
        )
    size = embedding.num_embeddings
    ids = torch.as_tensor(vectors.ids, dtype=torch.long)
    if len(ids) and (ids.min() < 0 or ids.max() >= size):
        raise WordVectorError(f"{vectors.source}: word ids outside the vocabulary of {size} words")
    with torch.no_grad():
        weight = embedding.weight
        if len(ids):
            loaded = torch.as_tensor(vectors.vectors, dtype=weight.dtype)
            covered = torch.zeros(size, dtype=torch.bool)
            covered[ids] = True
            covered[pad_token_id] = True
            rest = ~covered
            if rest.any():
                scale = loaded.norm(dim=1).mean() / weight[rest].norm(dim=1).mean().clamp_min(1e-12)
                weight[rest] *= scale
            weight[ids] = loaded
        weight[pad_token_id] = 0
    words = size - 1  # every id but padding
    with_vector = int((ids != pad_token_id).sum())
    counts = np.asarray(token_counts, dtype=np.float64)
    total = counts.sum() - counts[pad_token_id]
    covered_tokens = counts[vectors.ids[vectors.ids != pad_token_id]].sum()
    return {
        "source": vectors.source,
        "vocabulary_words_with_vector": with_vector,
        "vocabulary_coverage": round(with_vector / words, 4),
        "training_token_coverage": round(float(covered_tokens / total), 4) if total else 0.0,
        "parameters": vectors.parameters,
    }
