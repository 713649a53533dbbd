"""Everything a worker process holds for its lifetime: loop, model, store, state."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from llama_index.core.schema import BaseNode

from dropvec.config.bm25 import TermCounts, counted
from dropvec.config.errors import MilvusUnavailable, ServiceUnavailable, mapping
from dropvec.config.messages import EmbedTask, RemoveTask, embed_hash, embedded_text, to_node
from dropvec.config.records import FileRecord, FileStatus, TaskCount, retired
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import WorkerMetrics
from dropvec.ledger.state import StateStore, TaskDone
from dropvec.workers import store
from dropvec.workers.embed import embedding_dim, load_embedder
from dropvec.workers.loop import LoopThread
from dropvec.workers.store import (
    TEXT,
    ChunkWriter,
    ensure_collection,
    iter_embed_hashes,
    iter_rows,
    open_store,
)

log = logging.getLogger(__name__)

#: A write that takes longer than this is treated as a store outage (and retried by Celery).
WRITE_TIMEOUT_SECONDS = 300
#: Embedded chunks are written once this many are ready (or the task's last are): an insert of
#: 32 rows cost 0.29 ms of a core a row (worker and Milvus Lite), of 64 rows 0.24 ms, of 128 0.22.
WRITE_AT_LEAST = 64
#: The chunks embedded last in a task, at most: their write is the one the task waits for (its
#: earlier writes run while these embed). With 64 rows last, a task of 128 chunks waited some
#: 20 ms for it, about 2% of a worker's time on the seed corpus.
EMBED_LAST = 8
#: A store call that did not end within WRITE_TIMEOUT_SECONDS is Milvus failing.
_late_writes = mapping(
    (TimeoutError,), MilvusUnavailable, f"Milvus (no answer within {WRITE_TIMEOUT_SECONDS} s)"
)


class Embedder(Protocol):
    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]: ...


class Writer(Protocol):
    """What the runtime needs of the store (``ChunkWriter`` on Milvus; a fake in unit tests)."""

    on_write: Callable[[float], None] | None

    async def stored_vectors(self, embed_hashes: Sequence[str]) -> dict[str, list[float]]: ...
    async def write(self, nodes: Sequence[BaseNode], *, maybe_stored: bool = True) -> int: ...
    async def delete_ids(self, ids: Sequence[str]) -> None: ...
    async def remove(self, doc_id: str, below_generation: int) -> int: ...
    def set_avgdl(self, avgdl: float) -> None: ...
    def take_terms(self) -> TermCounts: ...


class WorkerRuntime:
    """What one worker process holds: the model, the ledger, the store's writer on the process's
    event loop; and the processing of a task. ``start`` makes the real one."""

    def __init__(
        self, settings: Settings, *, embedder: Embedder, state: StateStore, writer: Writer, loop: LoopThread
    ) -> None:
        self.settings, self.embedder, self.state, self.writer, self.loop = (
            settings,
            embedder,
            state,
            writer,
            loop,
        )
        self.metrics = WorkerMetrics()
        #: Seconds of all write batches so far (added to on the loop's thread).
        self.write_seconds = 0.0
        self.writer.on_write = self._on_write

    @classmethod
    def start(cls, settings: Settings) -> WorkerRuntime:
        """Load the model once, make sure the collection fits it, open the store on a new loop."""
        embedder = load_embedder(settings)
        state = StateStore.from_settings(settings)

        def created() -> None:  # (before it exists: a worker that finds it finds its statistics)
            state.hashes.forget(settings.collection)
            state.terms.reset(settings.collection)

        if not ensure_collection(settings, embedding_dim(embedder), before_create=created):
            fill_stored(settings, state)
            fill_terms(settings, state)
        loop = LoopThread()

        async def open_writer() -> ChunkWriter:
            return ChunkWriter(open_store(settings, None, use_async=True), settings)

        writer = loop.run(open_writer(), timeout=120)
        # (pymilvus imports SciPy at its first insert of sparse vectors: a fifth of a second of a
        # core in the middle of the first task, so here instead)
        with contextlib.suppress(ImportError):
            import scipy.sparse  # noqa: F401
        return cls(settings, embedder=embedder, state=state, writer=writer, loop=loop)

    def _on_write(self, seconds: float) -> None:
        self.metrics.write_seconds.observe(seconds)
        self.write_seconds += seconds

    def process(self, task: EmbedTask, *, again: bool = False) -> int:
        """Write one task's chunks (see ``process_many``); how many were written."""
        return self.process_many([task], again=again)

    @_late_writes
    def process_many(self, tasks: Sequence[EmbedTask], *, again: bool = False) -> int:
        """Write the chunks of ``tasks`` (each of its own file version), embedding only those whose
        vector is not stored already; how many were written.

        Vectors are reused by embed hash (model and exact text), from any file; Milvus is asked
        only for hashes that Redis has seen written (``StoredHashes.may_be_stored``). What must be
        embedded is embedded in batches of like length across all the tasks, written while the
        next ones embed: once ``WRITE_AT_LEAST`` are ready, and all but the last ``EMBED_LAST``
        before those embed. Each task is counted as its file's own; one that completes its file's
        version removes the versions that it replaces. A task of a version that is no longer
        current is dropped (and whatever of it was written meanwhile is deleted).

        ``again``: the tasks may have run before (see ``tasks.ran_before``): chunks already stored
        are not written twice.
        """
        self._count_terms()  # (rows a task that failed part-way wrote)
        live = self._current(tasks)
        if not live:
            return 0
        # (the collection's mean length; for its first chunks, their own)
        avgdl = self.state.terms.avgdl(self.settings.collection)
        self.writer.set_avgdl(avgdl or counted(c.text for t in live for c in t.chunks).mean_length())
        texts = [[embedded_text(c, t.doc_id) for c in t.chunks] for t in live]
        hashes = [[embed_hash(self.settings.model_key, text) for text in ts] for ts in texts]
        nodes = [
            to_node(c, t.doc_id, generation=t.generation, embed_hash=h)
            for t, hs in zip(live, hashes, strict=True)
            for c, h in zip(t.chunks, hs, strict=True)
        ]
        every = sorted({h for hs in hashes for h in hs})
        known = self.state.hashes.may_be_stored(self.settings.collection, every)
        vectors = self.loop.run(self.writer.stored_vectors(known), WRITE_TIMEOUT_SECONDS) if known else {}
        todo = {h: text for ts, hs in zip(texts, hashes, strict=True) for h, text in zip(hs, ts, strict=True)}
        todo = {h: text for h, text in todo.items() if h not in vectors}
        pending = []
        embed_seconds, write_seconds_before = 0.0, self.write_seconds

        held: set[str] = set()

        def write(keys: set[str], *, now: bool = False) -> None:
            held.update(keys)
            if len(held) < WRITE_AT_LEAST and not now:
                return
            keys = set(held)
            held.clear()
            ready = [n for n in nodes if n.metadata["embed_hash"] in keys]
            for node in ready:
                node.embedding = vectors[node.metadata["embed_hash"]]
            if ready:
                pending.append(self.loop.submit(self.writer.write(ready, maybe_stored=again)))

        write(set(vectors))
        # batches of like length: torch pads a batch to its longest text; the graph engines pad
        # nothing and run texts of one token count together (encoder)
        keys = sorted(todo, key=lambda h: len(todo[h]))
        size = getattr(self.embedder, "embed_batch_size", 0) or self.settings.batch_size()
        batches = [keys[start : start + size] for start in range(0, len(keys), size)]
        if batches and len(batches[-1]) > EMBED_LAST:  # (the last write is the one waited for)
            batches[-1:] = [batches[-1][:-EMBED_LAST], batches[-1][-EMBED_LAST:]]
        for n, batch in enumerate(batches, 1):
            began = time.perf_counter()
            embedded = self.embedder.get_text_embedding_batch([todo[h] for h in batch])
            self.metrics.embed_seconds.observe(seconds := time.perf_counter() - began)
            embed_seconds += seconds
            vectors.update(zip(batch, embedded, strict=True))
            write(set(batch), now=n == len(batches) - 1)  # (all but the last batch's, while it embeds)
        write(set(), now=True)
        for f in pending:
            f.result(WRITE_TIMEOUT_SECONDS)
        self._count_terms()
        self.state.hashes.add(self.settings.collection, todo)
        work: dict[str, float] = {
            "embed_seconds": embed_seconds,
            "write_seconds": self.write_seconds - write_seconds_before,
        }
        kept = self._count(live, hashes, set(todo), work)
        self._count_terms()  # (rows of replaced tasks deleted)
        self.state.counters.count(work)
        return kept

    def _count_terms(self) -> None:
        """The BM25 statistics of the collection get what the rows written and removed changed;
        where Redis lost them, they are counted again from the rows."""
        if not self.state.terms.apply(self.settings.collection, self.writer.take_terms()):
            collection = self.settings.collection
            log.warning("Redis holds no BM25 statistics of %r: counting them from its rows", collection)
            fill_terms(self.settings, self.state, wait=False)

    def process_pack(
        self,
        tasks: Sequence[EmbedTask],
        requeue: Callable[[Sequence[EmbedTask]], None],
        *,
        again: bool = False,
    ) -> int:
        """``process_many`` for the tasks of several files sent as one. Should that fail other
        than by a service going down, each is handed to ``requeue``, to be queued as a task of its
        own: a file fails alone."""
        try:
            return self.process_many(tasks, again=again)
        except ServiceUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 (whatever it was, the files are tried one by one)
            log.warning("a task of %d files failed (%s: %s): each is queued on its own", len(tasks),
                        type(exc).__name__, exc)  # fmt: skip
            requeue(tasks)
            return 0

    def give_up(self, tasks: Sequence[EmbedTask], reason: str) -> list[RemoveTask]:
        """A task has given up: each of its files is failed with ``reason``, and none of it may
        stay searchable (neither the part of this version already written nor the versions it
        was to replace); the removals to send."""
        self.metrics.tasks.labels("failed").inc()
        removals = []
        for task in tasks:
            failed = self.state.task_failed(task.run_id, task.doc_id, task.generation, task.file_path, reason)
            self.state.counters.count(
                {"task_failures": 1, "chunks:failed": len(task.chunks), "files:failed": int(failed)}
            )
            if failed:
                targets = retired(task.doc_id, self.state.replaced_by(task.doc_id), failed_at=task.generation)
                removals += [t.task(task.file_path) for t in targets]
        return removals

    def _current(self, tasks: Sequence[EmbedTask]) -> list[EmbedTask]:
        """The tasks of current file versions; the others are dropped."""
        current = self.state.current([(t.doc_id, t.generation) for t in tasks])
        for task, keep in zip(tasks, current, strict=True):
            if not keep:
                log.info(
                    "dropped task %d of %s: the file changed or is gone", task.task_index, task.file_path
                )
                self.metrics.tasks.labels("dropped").inc()
        return [t for t, keep in zip(tasks, current, strict=True) if keep]

    def _count(
        self, tasks: list[EmbedTask], hashes: list[list[str]], embedded: set[str], work: dict[str, float]
    ) -> int:
        """Count each written task once in the ledger (a vector embedded here counts as embedded
        for the first task that holds it, reused for the others); a task whose version was
        replaced while it was written has its rows deleted instead. The chunks of those kept."""
        still = self.state.current([(t.doc_id, t.generation) for t in tasks])
        for task, keep in zip(tasks, still, strict=True):
            if not keep:  # replaced or deleted while this task wrote: its rows must not outlive that
                ids = [c.id for c in task.chunks]
                with self.state.terms.removing(self.settings.collection, task.doc_id):
                    self.loop.run(self.writer.delete_ids(ids), WRITE_TIMEOUT_SECONDS)
                self.metrics.tasks.labels("dropped").inc()
        done, fresh = [], set(embedded)
        for task, hs, keep in zip(tasks, hashes, still, strict=True):
            if keep:
                mine = fresh.intersection(hs)
                fresh -= mine
                n = len(task.chunks)
                done.append((task, TaskDone(
                    task.run_id, task.doc_id, task.generation, task.task_index,
                    chunks=n, embedded=len(mine), reused=n - len(mine),
                )))  # fmt: skip
        outcomes = self.state.tasks_done([d for _, d in done])
        for (task, d), outcome in zip(done, outcomes, strict=True):
            if outcome:  # counted once, however often the task was delivered
                work["chunks:embedded"] = work.get("chunks:embedded", 0) + d.embedded
                work["chunks:reused"] = work.get("chunks:reused", 0) + d.reused
            self.metrics.tasks.labels("done").inc()
            self.metrics.chunks.labels("embedded").inc(d.embedded)
            self.metrics.chunks.labels("reused").inc(d.reused)
            repeat_of_indexed = (
                outcome == TaskCount.NOT_COUNTED
                and (self.state.record(task.doc_id) or FileRecord()).status == FileStatus.INDEXED
            )
            if outcome == TaskCount.FILE_INDEXED or repeat_of_indexed:
                # (a repeat retires again: the first try may have failed half-way)
                self.retire(task.doc_id)
        return sum(d.chunks for _, d in done)

    def retire(self, doc_id: str) -> None:
        """The file's current version is indexed: remove what it replaces (its own older
        versions, if it had any, and the file it was moved from)."""
        for target in retired(doc_id, self.state.replaced_by(doc_id)):
            self.remove(target.task())

    @_late_writes
    def remove(self, task: RemoveTask) -> int:
        with self.state.terms.removing(self.settings.collection, task.doc_id):
            removed = self.loop.run(
                self.writer.remove(task.doc_id, task.below_generation), WRITE_TIMEOUT_SECONDS
            )
        self._count_terms()
        if removed:
            log.info("removed %d chunk(s) of %s", removed, task.file_path or task.doc_id)
        return removed

    def close(self) -> None:
        self.loop.stop()


def fill_stored(settings: Settings, state: StateStore) -> int:
    """If Redis has no set of the hashes written to the collection (an older dropvec made it, or
    Redis lost it) and no other worker is making it: record every hash the collection holds.
    How many rows were read."""
    if not state.hashes.claim_fill(settings.collection):
        return 0
    rows = 0
    try:
        for hashes in iter_embed_hashes(settings):
            state.hashes.add(settings.collection, hashes)
            rows += len(hashes)
    finally:
        state.hashes.end_fill(settings.collection)
    log.info("listed the %d stored vectors of %r for reuse", rows, settings.collection)
    return rows


def fill_terms(settings: Settings, state: StateStore, *, wait: bool = True) -> int:
    """If Redis has no BM25 statistics of the collection (a collection migrated from Milvus's own
    BM25, or Redis lost them): count every row's terms, unless another worker is counting them
    (``wait``: until it is done). How many rows were read.

    Workers write only once the statistics exist (``WorkerRuntime.start``), so a count is exact
    unless Redis lost them while workers ran: rows those write meanwhile may be counted twice or
    not at all, a small drift in the weights of terms (never in what is stored) that ``check
    --repair`` ends. Statistics that appear meanwhile are kept (``TermStats.replace``)."""
    collection = settings.collection
    while not state.terms.claim_fill(collection):
        if not wait or state.terms.has_stats(collection):
            return 0
        time.sleep(0.5)  # (another worker is counting them)
    counts = TermCounts()
    try:
        for page in iter_rows(settings, [TEXT]):
            counts.merge(counted(row.get(TEXT) or "" for row in page))
            state.terms.renew_fill(collection)
        state.terms.replace(collection, counts, only_if_missing=True)
    finally:
        state.terms.end_fill(collection)
    log.info("counted the terms of the %d stored chunks of %r for BM25", counts.docs, collection)
    return counts.docs


def migrate(settings: Settings) -> int:
    """``store.migrate``: a collection of an older dropvec rebuilt with this one's fields; then
    its BM25 statistics counted afresh. How many rows were copied (0: it was current)."""
    copied = store.migrate(settings)
    if copied:
        state = StateStore.from_settings(settings)
        state.terms.forget(settings.collection)
        fill_terms(settings, state)
    return copied


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> WorkerRuntime:
    """The process's runtime, created on first use (after fork, in prefork pools)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime.start(settings or Settings())
        return _runtime
