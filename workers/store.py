"""Milvus through llama-index's MilvusVectorStore: the collection, writes, counts and search."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from llama_index.core.schema import BaseNode
from llama_index.vector_stores.milvus import MilvusVectorStore
from pymilvus import MilvusClient
from pymilvus.client.types import LoadState

from config.settings import Settings
from dropvec.errors import ConfigError

log = logging.getLogger(__name__)


def open_store(settings: Settings, dim: int | None, *, use_async: bool) -> MilvusVectorStore:
    """The collection, created on first use with ``dim`` and the configured metric.

    With ``use_async`` this must be called on the event loop that will use the store: the async
    client binds to it. An existing collection whose vector dimension differs from ``dim`` is
    refused: a different model needs a different collection.
    """
    if dim is not None:
        check_dimension(settings, dim)
    return MilvusVectorStore(
        uri=settings.milvus_uri,
        token=settings.milvus_token.get_secret_value(),
        collection_name=settings.collection,
        dim=dim,
        similarity_metric=settings.metric,
        consistency_level=settings.consistency_level,
        index_config={"index_type": settings.index_type, "metric_type": settings.metric},
        upsert_mode=True,
        batch_size=settings.write_batch_size,
        use_async_client=use_async,
    )


def milvus_client(settings: Settings) -> MilvusClient:
    return MilvusClient(uri=settings.milvus_uri, token=settings.milvus_token.get_secret_value())


def check_dimension(settings: Settings, dim: int) -> None:
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            return
        for field in client.describe_collection(settings.collection)["fields"]:
            have = field.get("params", {}).get("dim")
            if have is not None and int(have) != dim:
                raise ConfigError(
                    f"collection {settings.collection!r} holds {have}-dimensional vectors but the "
                    f"model {settings.embed_model!r} makes {dim}: set DROPVEC_COLLECTION to a new name"
                )
    finally:
        client.close()


def ensure_loaded(client: MilvusClient, collection: str) -> None:
    """Load the collection for search if it is not (a restarted Milvus reloads it lazily)."""
    if client.get_load_state(collection).get("state") != LoadState.Loaded:
        client.load_collection(collection)


def count_entities(settings: Settings) -> int:
    """Exact number of chunks stored (strong consistency); 0 when the collection does not exist."""
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            return 0
        ensure_loaded(client, settings.collection)
        rows = client.query(
            settings.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])
    finally:
        client.close()


class ChunkWriter:
    """Concurrent ``async_add`` batches, at most ``write_concurrency`` in flight per process."""

    def __init__(self, store: MilvusVectorStore, settings: Settings) -> None:
        self.store = store
        self.batch_size = settings.write_batch_size
        self._slots = asyncio.Semaphore(settings.write_concurrency)

    async def write(self, nodes: Sequence[BaseNode]) -> int:
        batches = [list(nodes[i : i + self.batch_size]) for i in range(0, len(nodes), self.batch_size)]
        written = await asyncio.gather(*(self._write_one(b) for b in batches))
        return sum(written)

    async def _write_one(self, batch: list[BaseNode]) -> int:
        async with self._slots:
            return len(await self.store.async_add(batch))
