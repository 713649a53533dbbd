"""Retrieval over the collection, with the same llama-index calls as the tutorial's query code."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding

from config.settings import Settings
from dropvec.errors import DropvecError
from workers.store import ensure_loaded, milvus_client, open_store


@dataclass(frozen=True)
class Hit:
    score: float
    file: str
    chunk: int
    text: str
    page: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def search(settings: Settings, question: str, k: int, embedder: BaseEmbedding) -> list[Hit]:
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            raise DropvecError(f"nothing indexed yet: collection {settings.collection!r} does not exist")
        ensure_loaded(client, settings.collection)
    finally:
        client.close()
    store = open_store(settings, None, use_async=False)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embedder)
    hits = []
    for result in index.as_retriever(similarity_top_k=k).retrieve(question):
        meta = result.node.metadata
        hits.append(
            Hit(
                score=float(result.score or 0.0),
                file=str(meta.get("file_path", "")),
                chunk=int(meta.get("chunk_index", -1)),
                text=result.node.get_content(),
                page=str(meta.get("page_label", "")),
            )
        )
    return hits
