"""BM25 made by dropvec, not by Milvus: the terms of a text, and the weights of its sparse vectors.

Milvus's own BM25 (a function on the text field) keeps its index of document lengths in the
growing segment, and Milvus Lite, the embedded default, slows with every row it holds there: 4,769
vectors/s at 1,000,000 rows, against 6,756 level for a plain sparse field (docs/benchmarks.md).
So the collection holds a plain sparse field, filled here, and searched by inner product:

    document weight of term t   tf·(k1 + 1) / (tf + k1·(1 − b + b·dl/avgdl))
    query weight of term t      qtf · log(1 + (N − df + 0.5) / (df + 0.5))

The product summed over the query's terms is Okapi BM25, with Milvus's defaults (k1 1.2, b 0.75)
and its English analyzer: words (runs of Unicode letters and digits), lower case, English stop
words, the Snowball English stemmer. ``avgdl`` is the collection's when the chunk is written; N
and df (the documents, and those holding t) are counted in the ledger (``dropvec.ledger.terms``),
as the rows are written and removed, and read at query time. A term is a 32-bit key of its stem.

Pure functions: nothing here touches a service.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import Stemmer

K1, B = 1.2, 0.75
#: Lucene's English stop words, as Milvus's ``_english_`` list.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
#: Longer "words" (hashes, base64, run-together identifiers) are left out, as Lucene does.
MAX_WORD = 40
#: Words as Milvus's standard tokenizer cuts them: runs of letters and digits (``x86_64``: two).
_WORD = re.compile(r"[^\W_]+")
_stemmer = Stemmer.Stemmer("english")


class _Keys(dict[str, int]):
    """Lower-case word → its term key (0: a stop word or one too long), computed once a word."""

    #: Words kept at most; past this the cache starts again (a few tens of MB).
    LIMIT = 500_000

    def __missing__(self, word: str) -> int:
        if len(self) >= self.LIMIT:
            self.clear()
        key = 0
        if word not in STOP_WORDS and len(word) <= MAX_WORD:
            key = zlib.crc32(_stemmer.stemWord(word).encode()) or 1
        self[word] = key
        return key


_keys = _Keys()


def terms(text: str) -> Counter[int]:
    """Term key → count in ``text``."""
    # (the words mapped and counted in C; a word's key computed in Python once)
    keys = Counter(map(_keys.__getitem__, _WORD.findall(text.lower())))
    keys.pop(0, None)
    return keys


@dataclass
class TermCounts:
    """What rows add to the collection's statistics: documents, their tokens, and for each term
    the documents that hold it (negative where rows were removed)."""

    docs: int = 0
    tokens: int = 0
    df: Counter[int] = field(default_factory=Counter)

    def add(self, counts: Mapping[int, int], sign: int = 1) -> None:
        """One document of term ``counts`` (``sign`` -1: removed)."""
        self.docs += sign
        self.tokens += sign * sum(counts.values())
        if sign > 0:
            self.df.update(counts.keys())
        else:
            self.df.subtract(counts.keys())

    def merge(self, other: TermCounts, sign: int = 1) -> None:
        self.docs += sign * other.docs
        self.tokens += sign * other.tokens
        self.df.update({key: sign * n for key, n in other.df.items()})

    def mean_length(self) -> float:
        return self.tokens / self.docs if self.docs > 0 else 0.0

    def negated(self) -> TermCounts:
        """The change that removing these rows makes."""
        out = TermCounts()
        out.merge(self, sign=-1)
        return out


def counted(texts: Iterable[str]) -> TermCounts:
    out = TermCounts()
    for text in texts:
        out.add(terms(text))
    return out


def document_vector(counts: Mapping[int, int], avgdl: float) -> dict[int, float]:
    """The document side of BM25 for a text's term counts; ``avgdl``: the collection's mean
    document length in terms (its own length when it is the first)."""
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / (avgdl or length or 1))
    return {key: tf * (K1 + 1) / (tf + norm) for key, tf in counts.items()}


def idf(docs: int, df: int) -> float:
    return math.log(1 + (docs - df + 0.5) / (df + 0.5))


def query_vector(counts: Mapping[int, int], docs: int, df: Mapping[int, int]) -> dict[int, float]:
    """The query side: each term of the query weighted by its IDF in a collection of ``docs``
    documents, ``df`` of which hold it (missing: none)."""
    return {key: qtf * idf(docs, min(df.get(key, 0), docs)) for key, qtf in counts.items()}
