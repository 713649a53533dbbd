"""BM25's document side as llama-index's sparse embedding function: what ``MilvusVectorStore``
calls for each node it writes (``dropvec.config.bm25`` makes the weights)."""

from __future__ import annotations

from collections import Counter

from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction

from dropvec.config import bm25
from dropvec.config.bm25 import TermCounts


class BM25Terms(BaseSparseEmbeddingFunction):
    """Documents weighted with ``avgdl`` (set by the writer from the collection's statistics).
    The terms of each text encoded are kept until ``take`` hands them over, so that what a
    write stored is counted in the statistics once it is stored, without analysing it twice."""

    def __init__(self) -> None:
        self.avgdl = 0.0
        self._seen: dict[str, Counter[int]] = {}

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        out = []
        for text in documents:
            counts = self._seen[text] = bm25.terms(text)
            out.append(bm25.document_vector(counts, self.avgdl))
        return out

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        raise NotImplementedError(
            "a BM25 query needs the collection's term statistics: dropvec.search weighs it"
        )

    def take(self, texts: list[str]) -> TermCounts:
        """The terms of ``texts`` (encoded before, or analysed now), forgotten here."""
        out = TermCounts()
        for text in texts:
            counts = self._seen.pop(text, None)
            out.add(counts if counts is not None else bm25.terms(text))
        return out

    def forget(self) -> None:
        self._seen.clear()
