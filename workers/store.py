"""Milvus through llama-index's MilvusVectorStore: the collection, writes, reuse, removal, counts.

The collection is created here, with the fields llama-index's MilvusVectorStore uses (``id``,
``doc_id``, ``text``, ``embedding``) plus dropvec's own, each with a scalar index:

    embed_hash        the model and the exact text embedded: a stored vector is reused by this key
    generation        the file version the chunk belongs to: older versions are removed by it
    file_path, file_type, modified
                      where the chunk comes from, for filters at query time
    sparse_embedding  BM25 of ``text``, the document side (``dropvec.config.bm25``: words, stop
                      words, stemming), searched by inner product with the query side, which
                      holds the terms' IDF; made here from the text, by ``BM25Terms``

A Milvus without sparse vectors (before 2.4) gets the collection without the sparse field, and
searches there are dense only. A collection of an older dropvec (without the file fields, or with
Milvus's own BM25 function, whose index slows Milvus Lite as it grows) is rebuilt with the current
fields from its own stored vectors by ``migrate``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from pymilvus import DataType, MilvusClient
from pymilvus.client import entity_helper
from pymilvus.client.types import LoadState
from pymilvus.exceptions import MilvusException

from dropvec.config.bm25 import TermCounts, counted, document_vector, terms
from dropvec.config.errors import ConfigError, MilvusUnavailable, mapped_methods, mapping
from dropvec.config.polling import poll
from dropvec.config.settings import Settings

if TYPE_CHECKING:  # (llama-index takes a second to import: only the write and read paths pay it)
    from llama_index.core.schema import BaseNode, NodeWithScore
    from llama_index.vector_stores.milvus import MilvusVectorStore

    from dropvec.workers.sparse import BM25Terms

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
# Milvus Lite answers a query iterator's first call without the snapshot time it asks for; the
# iterator takes the client's time instead (as good for a read that needs no snapshot), and says
# so at every call.
logging.getLogger("pymilvus.orm.iterator").addFilter(lambda record: "mvccTs" not in record.getMessage())


def open_store(settings: Settings, dim: int | None, *, use_async: bool) -> MilvusVectorStore:
    """The collection, created on first use with ``dim`` and the configured metric.

    With ``use_async`` this must be called on the event loop that will use the store: the async
    client binds to it. An existing collection whose vector dimension differs from ``dim`` is
    refused: a different model needs a different collection.
    """
    from llama_index.vector_stores.milvus import MilvusVectorStore

    from dropvec.workers.sparse import BM25Terms

    if dim is not None:
        ensure_collection(settings, dim)
    sparse = has_text_search(settings)
    return MilvusVectorStore(
        **settings.milvus_connection,
        collection_name=settings.collection,
        dim=dim,
        similarity_metric=settings.metric,
        consistency_level=settings.consistency_level,
        index_config={"index_type": settings.index_type, "metric_type": settings.metric},
        upsert_mode=False,  # (ChunkWriter.write: each chunk is stored once without it)
        batch_size=settings.write_batch_size,
        use_async_client=use_async,
        enable_sparse=sparse,
        sparse_embedding_field=SPARSE,
        sparse_embedding_function=BM25Terms() if sparse else None,
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
FILE_PATH, FILE_TYPE, MODIFIED = "file_path", "file_type", "modified"
SPARSE = "sparse_embedding"  # (llama-index's name for it: its sparse query modes find it)
#: Scalar index types to try, newest Milvus first.
SCALAR_INDEX_TYPES = ("INVERTED", "Trie")
#: Queries at most per vector look-up (see ChunkWriter.stored_vectors).
LOOKUP_ROUNDS = 3
#: The most rows one query returns (Milvus's own limit on query results).
QUERY_LIMIT = 16_384


@milvus_errors
def ensure_collection(settings: Settings, dim: int, before_create: Callable[[], None] | None = None) -> bool:
    """Create the collection if missing (True if this call did); refuse one whose vectors or
    fields do not fit. ``before_create``: called before the collection is created (whoever else
    then finds it finds what this sets up)."""
    client = milvus_client(settings)
    try:
        if client.has_collection(settings.collection):
            described = client.describe_collection(settings.collection)
            _check_collection(settings, described["fields"], dim)
            if _milvus_bm25(described):
                raise ConfigError(
                    f"collection {settings.collection!r} was made by an older dropvec (Milvus's own "
                    "BM25 function): run `dropvec migrate` (its vectors are copied, nothing is embedded)"
                )
            return False
        if before_create is not None:
            before_create()
        try:
            create_collection(client, settings, dim, text_search=True)
        except MilvusException as exc:
            if client.has_collection(settings.collection):
                _wait_until_loaded(client, settings.collection)  # another worker is creating it
                return False
            # (a Milvus before 2.4: no sparse vectors)
            log.warning("Milvus made no BM25 field (%s): searches will be dense only", exc)
            create_collection(client, settings, dim, text_search=False)
        client.load_collection(settings.collection)
        return True
    finally:
        client.close()


def create_collection(client: MilvusClient, settings: Settings, dim: int, *, text_search: bool) -> None:
    """The collection, its indexes, loaded; ``text_search``: with the BM25 field."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field(ID, DataType.VARCHAR, max_length=65_535, is_primary=True)
    schema.add_field(DOC_ID, DataType.VARCHAR, max_length=65_535)
    schema.add_field(TEXT, DataType.VARCHAR, max_length=65_535)
    schema.add_field(EMBED_HASH, DataType.VARCHAR, max_length=64)
    schema.add_field(GENERATION, DataType.INT64)
    # (not nullable: Milvus Lite has no nullable fields; every row has them: with_file_fields)
    schema.add_field(FILE_PATH, DataType.VARCHAR, max_length=65_535)
    schema.add_field(FILE_TYPE, DataType.VARCHAR, max_length=64)
    schema.add_field(MODIFIED, DataType.INT64)
    schema.add_field(EMBEDDING, DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index(EMBEDDING, index_type=settings.index_type, metric_type=settings.metric)
    if text_search:
        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        index.add_index(SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(settings.collection, schema=schema, consistency_level=settings.consistency_level)
    try:
        client.create_index(settings.collection, index)
        for field in (DOC_ID, EMBED_HASH, FILE_PATH, FILE_TYPE, MODIFIED):
            _index_scalar(client, settings.collection, field)
        client.load_collection(settings.collection)
    except MilvusException:
        client.drop_collection(settings.collection)  # (made here: made again, or not at all)
        raise


@milvus_errors
def has_text_search(settings: Settings) -> bool:
    """Whether the collection holds the BM25 field that this dropvec fills (on Milvus 2.4+)."""
    key = (settings.milvus_uri, settings.collection)
    if key not in _text_search:
        client = milvus_client(settings)
        try:
            described = client.describe_collection(settings.collection)
        finally:
            client.close()
        # (a BM25 field that Milvus's own function fills is an older dropvec's: `migrate`)
        ours = any(f["name"] == SPARSE for f in described["fields"]) and not _milvus_bm25(described)
        _text_search[key] = ours
    return _text_search[key]


_text_search: dict[tuple[str, str], bool] = {}


def _milvus_bm25(described: dict[str, Any]) -> bool:
    """Whether a described collection has a field that a Milvus function fills (the BM25 of an
    older dropvec). Milvus Lite lists no functions, but marks their output fields."""
    return bool(described.get("functions")) or any(f.get("is_function_output") for f in described["fields"])


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
        return count_of(client, settings.collection) if client.has_collection(settings.collection) else 0
    finally:
        client.close()


@milvus_errors
def iter_embed_hashes(settings: Settings, batch: int = 10_000) -> Iterator[list[str]]:
    """Every stored chunk's embed hash, a batch at a time."""
    for page in iter_rows(settings, [EMBED_HASH], batch):
        yield [row[EMBED_HASH] for row in page if row.get(EMBED_HASH)]


#: What the check reads of every row (``iter_rows``): which file version it is, and its vector's key.
ROW_FIELDS = [ID, DOC_ID, GENERATION, FILE_PATH, EMBED_HASH]


@milvus_errors
def iter_rows(settings: Settings, fields: list[str], batch: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Every stored row's ``fields``, ``batch`` rows at a time, in id order (a row stored twice
    under one id, comes once); nothing when the collection does not exist. Memory is one batch,
    whatever the collection's size."""
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            return
        ensure_loaded(client, settings.collection)
        rows = client.query_iterator(
            settings.collection, filter="", output_fields=fields, batch_size=batch,
            consistency_level="Strong",
        )  # fmt: skip
        while page := rows.next():
            yield page
        rows.close()
    finally:
        client.close()


@milvus_errors
def count_rows(settings: Settings, doc_id: str | None = None) -> int:
    """Rows stored (of file ``doc_id``), a row stored twice under one id counted twice: against
    the rows ``iter_rows`` returns, the duplicates. 0 when the collection does not exist."""
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            return 0
        ensure_loaded(client, settings.collection)
        expr = f"{DOC_ID} == {json.dumps(doc_id)}" if doc_id is not None else ""
        rows = client.query(
            settings.collection, filter=expr, output_fields=["count(*)"], consistency_level="Strong"
        )  # fmt: skip
        return int(rows[0]["count(*)"])
    finally:
        client.close()


@milvus_errors
def delete_rows(settings: Settings, doc_id: str, generations: Sequence[int] | None = None) -> TermCounts:
    """Delete the rows of file ``doc_id`` (of these ``generations`` only, if given): the terms
    they held, for the BM25 statistics (``docs``: how many ids). Every copy of a row stored twice
    goes with its id."""
    client = milvus_client(settings)
    expr = f"{DOC_ID} == {json.dumps(doc_id)}"
    if generations is not None:
        expr += f" and {GENERATION} in {json.dumps([int(g) for g in generations])}"
    removed = TermCounts()
    try:
        if not client.has_collection(settings.collection):
            return removed
        while True:
            rows = client.query(
                settings.collection, filter=expr, output_fields=[ID, TEXT], limit=QUERY_LIMIT,
                consistency_level="Strong",
            )  # fmt: skip
            if rows:
                client.delete(settings.collection, ids=[row[ID] for row in rows])
            removed.merge(counted(row[TEXT] for row in rows))
            if len(rows) < QUERY_LIMIT:
                return removed
    finally:
        client.close()


@mapped_methods(milvus_errors)
class ChunkWriter:
    """Concurrent ``async_add`` batches, at most ``write_concurrency`` in flight per process;
    vector look-ups by embed hash; removal of a file's old versions. What the rows written and
    removed change in the BM25 statistics is kept until ``take_terms``."""

    def __init__(self, store: MilvusVectorStore, settings: Settings) -> None:
        self.store = store
        self.collection = settings.collection
        self.batch_size = settings.write_batch_size
        self._slots = asyncio.Semaphore(settings.write_concurrency)
        #: Called with the seconds of each write batch.
        self.on_write: Callable[[float], None] | None = None
        assert store.aclient is not None, "the store must be opened with use_async=True"
        self._client = store.aclient
        #: BM25's document side, as llama-index's store calls it (None: no BM25 field)
        self.sparse: BM25Terms | None = store.sparse_embedding_function if store.enable_sparse else None  # type: ignore[assignment]
        self._terms = TermCounts()

    def set_avgdl(self, avgdl: float) -> None:
        """The collection's mean document length, for the documents written next."""
        if self.sparse is not None:
            self.sparse.avgdl = avgdl

    def take_terms(self) -> TermCounts:
        """What the rows written and removed since the last call change in the statistics."""
        terms, self._terms = self._terms, TermCounts()
        if self.sparse is not None:
            self.sparse.forget()  # (texts encoded for a write that failed)
        return terms

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
                output_fields=[ID, TEXT],
                limit=QUERY_LIMIT,
                consistency_level="Strong",
            )
            await self._delete(rows)
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
        """Delete the rows of ``ids`` that are stored."""
        if ids:
            await self._delete(await self._query(
                filter=f"{ID} in {json.dumps(list(ids))}", output_fields=[ID, TEXT],
                consistency_level="Strong",
            ))  # fmt: skip

    async def _delete(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._client.delete(self.collection, ids=[row[ID] for row in rows])
            self._terms.merge(counted(row[TEXT] for row in rows), sign=-1)

    async def stored_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that are stored (a primary-key look-up)."""
        rows = await self._query(
            filter=f"{ID} in {json.dumps(list(ids))}", output_fields=[ID], consistency_level="Strong"
        )
        return {row[ID] for row in rows}

    async def write(self, nodes: Sequence[BaseNode], *, maybe_stored: bool = True) -> int:
        """Insert ``nodes`` (how many were written); ``maybe_stored``: less those whose ids are
        stored already.

        Insert, not upsert: a chunk id is new on every version of a file (its generation is in
        it), and an upsert, a delete by id before each insert, fell to 1,200 vectors/s at 70,000
        entities in Milvus Lite where inserts keep 5,000 (bench.store). What upsert gave, that a
        task run again (a worker lost, a retry after an outage) stores each chunk once, the
        look-up of the ids gives; it costs a query that grows with the collection, so a task's
        first run, which cannot find its own chunks stored, skips it."""
        for node in nodes:
            with_file_fields(node.metadata)
        if nodes and maybe_stored:
            stored = await self.stored_ids([n.node_id for n in nodes])
            nodes = [n for n in nodes if n.node_id not in stored]
        batches = [list(nodes[i : i + self.batch_size]) for i in range(0, len(nodes), self.batch_size)]
        written = await asyncio.gather(*(self._write_one(b) for b in batches))
        return sum(written)

    async def _write_one(self, batch: list[BaseNode]) -> int:
        async with self._slots:
            start = time.perf_counter()
            written = len(await self.store.async_add(batch))
            if self.sparse is not None:
                self._terms.merge(self.sparse.take([node.get_content() for node in batch]))
            if self.on_write is not None:
                self.on_write(time.perf_counter() - start)
            return written


@dataclass(frozen=True)
class Retrieval:
    """One search: ``dense`` by ``vector``, ``sparse`` (BM25) by ``terms`` (the query side of
    ``dropvec.config.bm25``), or ``hybrid`` by both, the top ``k`` of the chunks that
    ``expression`` (a Milvus filter; "" for all) admits."""

    mode: str
    vector: list[float] | None
    terms: dict[int, float] | None
    k: int
    expression: str = ""


#: What a search returns of each chunk: enough for llama-index to rebuild its node.
NODE_FIELDS = [TEXT, DOC_ID, "_node_content", "_node_type"]


@milvus_errors
def retrieve(settings: Settings, query: Retrieval) -> list[NodeWithScore]:
    """The chunks ``query`` finds, best first, as llama-index nodes with their scores.

    A hybrid search asks each leg for its ``search_depth`` best candidates and fuses them with
    Milvus's ranker (``search_ranker``: RRF with ``rrf_k``, or the weighted sum of normalised
    scores with ``dense_weight``).
    """
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    client = _readers[(settings.milvus_uri, settings.collection)][0]
    dense = {"data": [query.vector], "anns_field": EMBEDDING, "param": {"metric_type": settings.metric}}
    sparse = {"data": [query.terms], "anns_field": SPARSE, "param": {"metric_type": "IP"}}
    common = {"output_fields": NODE_FIELDS, "limit": query.k}
    mode = query.mode
    if not query.terms and mode != "dense":  # (a question of stop words alone: BM25 finds nothing)
        if mode == "sparse":
            return []
        mode = "dense"
    if mode == "hybrid":
        depth = max(query.k, settings.search_depth)
        legs = [AnnSearchRequest(**leg, limit=depth, expr=query.expression) for leg in (dense, sparse)]
        ranker = (
            RRFRanker(settings.rrf_k)
            if settings.search_ranker == "rrf"
            else WeightedRanker(settings.dense_weight, 1 - settings.dense_weight)
        )
        results = client.hybrid_search(settings.collection, legs, ranker=ranker, **common)
    else:
        leg = dense if mode == "dense" else sparse
        results = client.search(
            settings.collection, data=leg["data"], anns_field=leg["anns_field"],
            search_params=leg["param"], filter=query.expression, **common,
        )  # fmt: skip
    return [_node(hit) for hit in results[0]]


def _node(hit: dict[str, Any]) -> NodeWithScore:
    from llama_index.core.schema import NodeWithScore
    from llama_index.core.vector_stores.utils import metadata_dict_to_node

    row = hit["entity"]
    node = metadata_dict_to_node(row, text=row.get(TEXT))
    return NodeWithScore(node=node, score=float(hit["distance"]))


@milvus_errors
def neighbours(settings: Settings, node: BaseNode, around: int) -> str:
    """The text of ``node``'s chunk with up to ``around`` chunks of the same file version on each
    side, in file order."""
    meta = node.metadata
    index, generation = int(meta.get("chunk_index", -1)), int(meta.get("generation", 0))
    doc = node.ref_doc_id or ""
    if index < 0 or not doc:
        return node.get_content()
    client = _readers[(settings.milvus_uri, settings.collection)][0]
    rows = client.query(
        settings.collection,
        filter=(
            f"{DOC_ID} == {json.dumps(doc)} and {GENERATION} == {generation} "
            f"and chunk_index >= {index - around} and chunk_index <= {index + around}"
        ),
        output_fields=[TEXT, "chunk_index"],
    )
    return "\n\n".join(r[TEXT] for r in sorted(rows, key=lambda r: int(r["chunk_index"])))


@milvus_errors
def outdated(settings: Settings) -> bool:
    """Whether the collection exists but was made by an older dropvec: without the filter fields
    (nor, then, the BM25 one), or with Milvus's own BM25 function. One that this dropvec made
    without BM25, on a Milvus before 2.4, is current: migrating it again would not add it."""
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.collection):
            return False
        described = client.describe_collection(settings.collection)
        names = {f["name"] for f in described["fields"]}
        return not {FILE_PATH, FILE_TYPE, MODIFIED} <= names or _milvus_bm25(described)
    finally:
        client.close()


@milvus_errors
def migrate(settings: Settings, batch: int = 2_000) -> int:
    """Rebuild a collection of an older dropvec with this one's fields, from its own rows: the
    vectors are copied, never embedded again, and the BM25 field is made from the text (the
    statistics are counted afterwards, by ``runtime.migrate``).
    Rows are streamed (``batch`` at a time) into a new collection, which then takes the old one's
    name (renamed, or where the server cannot rename, as Milvus Lite cannot, copied back). A
    migration stopped part-way is finished by the next. How many rows were copied (0: the
    collection was current)."""
    client = milvus_client(settings)
    name, building = settings.collection, f"{settings.collection}_migrating"
    try:
        if client.has_collection(name) and not outdated(settings):
            return 0
        if client.has_collection(name):
            fields = client.describe_collection(name)["fields"]
            _check_collection(settings, fields, dim := _dim(fields))
            client.drop_collection(building)  # (a copy stopped part-way starts again)
            _create_current(client, settings.model_copy(update={"collection": building}), dim)
            copied = _copy(client, name, building, batch)
            client.drop_collection(name)
        elif client.has_collection(building):  # stopped after the old one was dropped
            copied = count_of(client, building)
        else:
            raise ConfigError(f"nothing to migrate: collection {name!r} does not exist")
        try:
            client.rename_collection(building, name)
        except (MilvusException, grpc.RpcError):
            dim = _dim(client.describe_collection(building)["fields"])
            _create_current(client, settings, dim)
            _copy(client, building, name, batch)
            client.drop_collection(building)
        _text_search.pop((settings.milvus_uri, name), None)
        _readers.pop((settings.milvus_uri, name), None)
        return copied
    finally:
        client.close()


def _create_current(client: MilvusClient, settings: Settings, dim: int) -> None:
    try:
        create_collection(client, settings, dim, text_search=True)
    except MilvusException as exc:
        log.warning("Milvus made no BM25 field (%s): the migrated collection is dense only", exc)
        create_collection(client, settings, dim, text_search=False)


def _copy(client: MilvusClient, source: str, target: str, batch: int) -> int:
    ensure_loaded(client, source)
    sparse = any(f["name"] == SPARSE for f in client.describe_collection(target)["fields"])
    copied, avgdl = 0, 0.0
    rows = client.query_iterator(source, filter="", output_fields=["*"], batch_size=batch)
    while page := rows.next():
        page = [_current(row) for row in page]
        if sparse:
            counts = [terms(row.get(TEXT) or "") for row in page]
            avgdl = avgdl or sum(sum(c.values()) for c in counts) / max(len(counts), 1)
            for row, c in zip(page, counts, strict=True):
                row[SPARSE] = document_vector(c, avgdl)
        client.insert(target, page)
        copied += len(page)
        log.info("copied %d rows of %s into %s", copied, source, target)
    rows.close()
    return copied


def count_of(client: MilvusClient, collection: str) -> int:
    ensure_loaded(client, collection)
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


def with_file_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with the file fields every row must have (Milvus Lite has no nullable fields),
    filled in where a node lacks them (a task's from an older producer, a row of an older
    collection): the type from the path's extension, the modification time 0 (unknown)."""
    path = str(metadata.get(FILE_PATH) or "")
    metadata[FILE_PATH] = path
    name = path.rsplit("/", 1)[-1]
    metadata.setdefault(FILE_TYPE, name.rsplit(".", 1)[-1].lower() if "." in name else "")
    metadata.setdefault(MODIFIED, 0)
    return metadata


def _dim(fields: list[dict]) -> int:
    return next(int(f["params"]["dim"]) for f in fields if f["name"] == EMBEDDING)


def _current(row: dict[str, Any]) -> dict[str, Any]:
    """A row of an older collection as this one stores it (the fields it lacked filled in)."""
    return with_file_fields({k: v for k, v in row.items() if k != SPARSE})
