"""Milvus through llama-index's MilvusVectorStore: the collection, writes, reuse, removal, counts.

The collection is created here, with the fields llama-index's MilvusVectorStore uses (``id``,
``doc_id``, ``text``, ``embedding``) plus two of dropvec's own, each with a scalar index:

    embed_hash   the model and the exact text embedded: a stored vector is reused by this key
    generation   the file version the chunk belongs to: older versions are removed by it
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from pymilvus import DataType, MilvusClient
from pymilvus.client import entity_helper
from pymilvus.client.types import LoadState
from pymilvus.exceptions import MilvusException

from dropvec.config.errors import ConfigError, MilvusUnavailable, mapped_methods, mapping
from dropvec.config.polling import poll
from dropvec.config.settings import Settings

if TYPE_CHECKING:  # (llama-index takes a second to import: only the write and read paths pay it)
    from llama_index.core.schema import BaseNode
    from llama_index.vector_stores.milvus import MilvusVectorStore

log = logging.getLogger(__name__)

#: What pymilvus (and the gRPC under it) raises when Milvus cannot be reached or fails.
MILVUS_ERRORS: tuple[type[BaseException], ...] = (MilvusException, grpc.RpcError, ConnectionError)
#: The adapter's boundary: these leave every function of this module as MilvusUnavailable.
milvus_errors = mapping(MILVUS_ERRORS, MilvusUnavailable, "Milvus")

# pymilvus "checks" each string of a row-based write character by character (it is handed one string
# where it expects a list of them), so the length check never fires, yet it took half the CPU of a
# write. Off; chunks are far below the fields' max_length (MAX_CHUNK_CHARS).
if hasattr(entity_helper, "CHECK_STR_ARRAY"):
    entity_helper.CHECK_STR_ARRAY = False


def open_store(settings: Settings, dim: int | None, *, use_async: bool) -> MilvusVectorStore:
    """The collection, created on first use with ``dim`` and the configured metric.

    With ``use_async`` this must be called on the event loop that will use the store: the async
    client binds to it. An existing collection whose vector dimension differs from ``dim`` is
    refused: a different model needs a different collection.
    """
    from llama_index.vector_stores.milvus import MilvusVectorStore

    if dim is not None:
        ensure_collection(settings, dim)
    return MilvusVectorStore(
        **settings.milvus_connection,
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
    return MilvusClient(**settings.milvus_connection)


_readers: dict[tuple[str, str], tuple[MilvusClient, MilvusVectorStore]] = {}
_readers_lock = threading.Lock()


@milvus_errors
def read_store(settings: Settings) -> MilvusVectorStore:
    """The store searches go through: one per process and collection (its synchronous client
    kept for the process's life, not one per request), the collection loaded. ConfigError if
    nothing was indexed yet."""
    key = (settings.milvus_uri, settings.collection)
    with _readers_lock:
        if key not in _readers:
            client = milvus_client(settings)
            if not client.has_collection(settings.collection):
                client.close()
                raise ConfigError(f"nothing indexed yet: collection {settings.collection!r} does not exist")
            _readers[key] = (client, open_store(settings, None, use_async=False))
        client, store = _readers[key]
    ensure_loaded(client, settings.collection)  # (a restarted Milvus loads it again lazily)
    return store


#: Field names, as llama-index's MilvusVectorStore writes them, and dropvec's own.
ID, DOC_ID, TEXT, EMBEDDING = "id", "doc_id", "text", "embedding"
EMBED_HASH, GENERATION = "embed_hash", "generation"
#: Scalar index types to try, newest Milvus first.
SCALAR_INDEX_TYPES = ("INVERTED", "Trie")
#: Queries at most per vector look-up (see ChunkWriter.stored_vectors).
LOOKUP_ROUNDS = 3
#: The most rows one query returns (Milvus's own limit on query results).
QUERY_LIMIT = 16_384


@milvus_errors
def ensure_collection(settings: Settings, dim: int) -> bool:
    """Create the collection if missing (True if this call did); refuse one whose vectors or
    fields do not fit."""
    client = milvus_client(settings)
    try:
        if client.has_collection(settings.collection):
            _check_collection(settings, client.describe_collection(settings.collection)["fields"], dim)
            return False
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field(ID, DataType.VARCHAR, max_length=65_535, is_primary=True)
        schema.add_field(DOC_ID, DataType.VARCHAR, max_length=65_535)
        schema.add_field(TEXT, DataType.VARCHAR, max_length=65_535)
        schema.add_field(EMBED_HASH, DataType.VARCHAR, max_length=64)
        schema.add_field(GENERATION, DataType.INT64)
        schema.add_field(EMBEDDING, DataType.FLOAT_VECTOR, dim=dim)
        try:
            client.create_collection(
                settings.collection, schema=schema, consistency_level=settings.consistency_level
            )
        except MilvusException:
            if not client.has_collection(settings.collection):
                raise
            _wait_until_loaded(client, settings.collection)  # another worker is creating it
            return False
        index = client.prepare_index_params()
        index.add_index(EMBEDDING, index_type=settings.index_type, metric_type=settings.metric)
        client.create_index(settings.collection, index)
        for field in (DOC_ID, EMBED_HASH):
            _index_scalar(client, settings.collection, field)
        client.load_collection(settings.collection)
        return True
    finally:
        client.close()


def _wait_until_loaded(client: MilvusClient, collection: str, timeout: float = 120) -> None:
    loaded = lambda: client.get_load_state(collection).get("state") == LoadState.Loaded  # noqa: E731
    if not poll(loaded, timeout=timeout, interval=0.2):
        raise ConfigError(f"collection {collection!r} exists but was not loaded within {timeout:.0f} s")


def _index_scalar(client: MilvusClient, collection: str, field: str) -> None:
    """An index for look-ups by ``field``: INVERTED (Milvus 2.4+, Lite), else Trie (2.3), else none."""
    for index_type in SCALAR_INDEX_TYPES:
        index = client.prepare_index_params()
        index.add_index(field, index_type=index_type)
        try:
            client.create_index(collection, index)
            return
        except MilvusException as exc:
            log.debug("no %s index on %s: %s", index_type, field, exc)
    log.warning("Milvus offers no scalar index for %s: look-ups by it scan the collection", field)


def _check_collection(settings: Settings, fields: list[dict], dim: int) -> None:
    names = {f["name"] for f in fields}
    if not {EMBED_HASH, GENERATION} <= names:
        raise ConfigError(
            f"collection {settings.collection!r} was made by an older dropvec (no {EMBED_HASH}/"
            f"{GENERATION} fields): set DROPVEC_COLLECTION to a new name, or drop it and ingest again"
        )
    for field in fields:
        have = field.get("params", {}).get("dim")
        if have is not None and int(have) != dim:
            raise ConfigError(
                f"collection {settings.collection!r} holds {have}-dimensional vectors but the "
                f"model {settings.embed_model!r} makes {dim}: set DROPVEC_COLLECTION to a new name"
            )


@milvus_errors
def ensure_loaded(client: MilvusClient, collection: str) -> None:
    """Load the collection for search if it is not (a restarted Milvus reloads it lazily)."""
    if client.get_load_state(collection).get("state") != LoadState.Loaded:
        client.load_collection(collection)


@milvus_errors
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


@milvus_errors
def iter_embed_hashes(settings: Settings, batch: int = 10_000) -> Iterator[list[str]]:
    """Every stored chunk's embed hash, a batch at a time."""
    client = milvus_client(settings)
    try:
        ensure_loaded(client, settings.collection)
        rows = client.query_iterator(
            settings.collection, filter="", output_fields=[EMBED_HASH], batch_size=batch
        )  # fmt: skip
        while page := rows.next():
            yield [row[EMBED_HASH] for row in page if row.get(EMBED_HASH)]
        rows.close()
    finally:
        client.close()


@mapped_methods(milvus_errors)
class ChunkWriter:
    """Concurrent ``async_add`` batches, at most ``write_concurrency`` in flight per process;
    vector look-ups by embed hash; removal of a file's old versions."""

    def __init__(self, store: MilvusVectorStore, settings: Settings) -> None:
        self.store = store
        self.collection = settings.collection
        self.batch_size = settings.write_batch_size
        self._slots = asyncio.Semaphore(settings.write_concurrency)
        #: Called with the seconds of each write batch.
        self.on_write: Callable[[float], None] | None = None
        assert store.aclient is not None, "the store must be opened with use_async=True"
        self._client = store.aclient

    async def stored_vectors(self, embed_hashes: Sequence[str]) -> dict[str, list[float]]:
        """Vectors already in the store for any of ``embed_hashes`` (one per hash).

        A text stored many times (a footer in every file) must not make the answer grow with it:
        each query returns at most twice as many rows as hashes still missing, and the hashes it
        found are left out of the next one. After ``LOOKUP_ROUNDS`` the rest counts as not found
        (and is embedded: a cost, never a wrong vector).
        """
        found: dict[str, list[float]] = {}
        missing = list(dict.fromkeys(embed_hashes))
        for _ in range(LOOKUP_ROUNDS):
            if not missing:
                break
            rows = await self._query(
                filter=f"{EMBED_HASH} in {json.dumps(missing)}",
                output_fields=[EMBED_HASH, EMBEDDING],
                limit=2 * len(missing),
            )
            for row in rows:
                found.setdefault(row[EMBED_HASH], [float(x) for x in row[EMBEDDING]])
            if len(rows) < 2 * len(missing):
                break  # the query saw every stored row of these hashes
            missing = [h for h in missing if h not in found]
        return found

    async def remove(self, doc_id: str, below_generation: int) -> int:
        """Remove the chunks of file ``doc_id`` older than ``below_generation``; how many."""
        removed = 0
        expr = f"{DOC_ID} == {json.dumps(doc_id)} and {GENERATION} < {int(below_generation)}"
        while True:
            rows = await self._query(
                filter=expr,
                output_fields=[ID],
                limit=QUERY_LIMIT,
                consistency_level="Strong",
            )
            await self.delete_ids([row[ID] for row in rows])
            removed += len(rows)
            if len(rows) < QUERY_LIMIT:
                return removed

    async def _query(self, **kwargs: Any) -> list[dict[str, Any]]:
        """A query; a collection that a restarted Milvus has not loaded yet is loaded first."""
        try:
            return list(await self._client.query(self.collection, **kwargs))
        except MilvusException as exc:
            if "load" not in str(exc):
                raise
            await self._client.load_collection(self.collection)
            return list(await self._client.query(self.collection, **kwargs))

    async def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            await self._client.delete(self.collection, ids=list(ids))

    async def write(self, nodes: Sequence[BaseNode]) -> int:
        batches = [list(nodes[i : i + self.batch_size]) for i in range(0, len(nodes), self.batch_size)]
        written = await asyncio.gather(*(self._write_one(b) for b in batches))
        return sum(written)

    async def _write_one(self, batch: list[BaseNode]) -> int:
        async with self._slots:
            start = time.perf_counter()
            written = len(await self.store.async_add(batch))
            if self.on_write is not None:
                self.on_write(time.perf_counter() - start)
            return written
