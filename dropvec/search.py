"""Retrieval over the collection, with the same llama-index calls as the tutorial's query code."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle

from dropvec.config.settings import Settings
from dropvec.workers.embed import load_embedder
from dropvec.workers.store import milvus_errors, read_store


@dataclass(frozen=True)
class Hit:
    score: float
    file: str
    chunk: int
    text: str
    page: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def where(self) -> str:
        """File, chunk and page, in one line."""
        return f"{self.file} #{self.chunk}" + (f" p.{self.page}" if self.page else "")

    @classmethod
    def of(cls, result: NodeWithScore) -> Hit:
        meta = result.node.metadata
        return cls(
            score=float(result.score or 0.0),
            file=str(meta.get("file_path", "")),
            chunk=int(meta.get("chunk_index", -1)),
            text=result.node.get_content(),
            page=str(meta.get("page_label", "")),
        )


class Retriever(BaseRetriever):
    """The top-k chunks of the collection for a question: ``VectorStoreIndex.as_retriever`` over
    dropvec's MilvusVectorStore. Also usable by llama-index's async query engines: the async
    path runs the same retrieval in a thread (the store's client is a synchronous one)."""

    def __init__(self, settings: Settings, k: int, embedder: BaseEmbedding) -> None:
        super().__init__()
        index = VectorStoreIndex.from_vector_store(read_store(settings), embed_model=embedder)
        self._inner = index.as_retriever(similarity_top_k=k)

    @milvus_errors
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._inner.retrieve(query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def search(
    settings: Settings, question: str, k: int | None = None, embedder: BaseEmbedding | None = None
) -> list[Hit]:
    """The top ``k`` (default: DROPVEC_TOP_K) chunks for ``question``; ``embedder``: the
    configured model's, loaded here if not given."""
    embedder = embedder or load_embedder(settings)
    return [
        Hit.of(result) for result in Retriever(settings, k or settings.top_k, embedder).retrieve(question)
    ]
