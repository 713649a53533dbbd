"""Everything a worker process holds for its lifetime: loop, model, store, state."""

from __future__ import annotations

import logging
import threading
import time

from llama_index.core.schema import MetadataMode

from config.messages import EmbedTask, RemoveTask, embed_hash, to_node
from config.settings import Settings
from dropvec.metrics import WorkerMetrics
from dropvec.state import FILE_INDEXED, StateStore
from workers.embed import embedding_dim, load_embedder
from workers.loop import LoopThread
from workers.store import ChunkWriter, ensure_collection, iter_embed_hashes, open_store

log = logging.getLogger(__name__)

#: A write that takes longer than this is treated as a store outage (and retried by Celery).
WRITE_TIMEOUT_SECONDS = 300


class WorkerRuntime:
    """Loads the model once, opens the store on the process's event loop, runs tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder = load_embedder(settings)
        self.dim = embedding_dim(self.embedder)
        self.state = StateStore.from_settings(settings)
        if ensure_collection(settings, self.dim):
            self.state.forget_stored(settings.collection)
        else:
            fill_stored(settings, self.state)
        self.loop = LoopThread()
        self.writer = self.loop.run(self._open_writer(), timeout=120)
        self.metrics = WorkerMetrics()
        #: Seconds of all write batches so far (added to on the loop's thread).
        self.write_seconds = 0.0
        self.writer.on_write = self._on_write

    def _on_write(self, seconds: float) -> None:
        self.metrics.write_seconds.observe(seconds)
        self.write_seconds += seconds

    async def _open_writer(self) -> ChunkWriter:
        return ChunkWriter(open_store(self.settings, None, use_async=True), self.settings)

    def process(self, task: EmbedTask) -> int:
        """Write the task's chunks, embedding only those whose vector is not stored already.

        Vectors are reused by embed hash (model and exact text), from any file; Milvus is asked
        only for hashes that Redis has seen written (``StateStore.may_be_stored``). What must be
        embedded is embedded batch by batch, each batch written while the next one embeds. When
        this task completes its file's version, the versions it replaces are removed.
        """
        doc_id, generation = task.doc_id, task.generation
        if not self.state.is_current(doc_id, generation):
            log.info("dropped task %d of %s: the file changed or is gone", task.task_index, task.file_path)
            self.metrics.tasks.labels("dropped").inc()
            return 0
        texts = [to_node(c, doc_id).get_content(metadata_mode=MetadataMode.EMBED) for c in task.chunks]
        hashes = [embed_hash(self.settings.model_key, text) for text in texts]
        nodes = [
            to_node(c, doc_id, generation=generation, embed_hash=h)
            for c, h in zip(task.chunks, hashes, strict=True)
        ]
        known = self.state.may_be_stored(self.settings.collection, sorted(set(hashes)))
        vectors = self.loop.run(self.writer.stored_vectors(known), WRITE_TIMEOUT_SECONDS) if known else {}
        todo = {h: text for h, text in zip(hashes, texts, strict=True) if h not in vectors}
        pending = []
        embed_seconds, write_seconds_before = 0.0, self.write_seconds

        def write(keys: set[str]) -> None:
            ready = [n for n, h in zip(nodes, hashes, strict=True) if h in keys]
            for node in ready:
                node.embedding = vectors[node.metadata["embed_hash"]]
            if ready:
                pending.append(self.loop.submit(self.writer.write(ready)))

        write(set(vectors))
        keys = sorted(todo, key=lambda h: len(todo[h]))  # batches of like length: little padding
        for start in range(0, len(keys), self.settings.embed_batch_size):
            batch = keys[start : start + self.settings.embed_batch_size]
            began = time.perf_counter()
            embedded = self.embedder.get_text_embedding_batch([todo[h] for h in batch])
            self.metrics.embed_seconds.observe(seconds := time.perf_counter() - began)
            embed_seconds += seconds
            vectors.update(zip(batch, embedded, strict=True))
            write(set(batch))
        written = sum(f.result(WRITE_TIMEOUT_SECONDS) for f in pending)
        self.state.add_stored(self.settings.collection, todo)
        work: dict[str, float] = {
            "embed_seconds": embed_seconds,
            "write_seconds": self.write_seconds - write_seconds_before,
        }
        if not self.state.is_current(doc_id, generation):
            # replaced or deleted while this task wrote: its rows must not outlive that
            self.loop.run(self.writer.delete_ids([n.node_id for n in nodes]), WRITE_TIMEOUT_SECONDS)
            self.state.count(work)
            self.metrics.tasks.labels("dropped").inc()
            return 0
        outcome = self.state.task_done(
            task.run_id, doc_id, generation, task.task_index,
            chunks=written, embedded=len(todo), reused=written - len(todo),
        )  # fmt: skip
        if outcome:  # counted once, however often the task was delivered
            work.update({"chunks:embedded": len(todo), "chunks:reused": written - len(todo)})
        self.state.count(work)
        self.metrics.tasks.labels("done").inc()
        self.metrics.chunks.labels("embedded").inc(len(todo))
        self.metrics.chunks.labels("reused").inc(written - len(todo))
        repeat_of_indexed = outcome == 0 and self.state.get_file(doc_id).get("status") == "indexed"
        if outcome == FILE_INDEXED or repeat_of_indexed:
            # (a repeat retires again: the first try may have failed half-way)
            self.retire(doc_id)
        return written

    def retire(self, doc_id: str) -> None:
        """The file's current version is indexed: remove what it replaces (its own older
        versions, if it had any, and the file it was moved from)."""
        for target in self.state.replaced_by(doc_id):
            self.remove(target.task())

    def remove(self, task: RemoveTask) -> int:
        removed = self.loop.run(self.writer.remove(task.doc_id, task.below_generation), WRITE_TIMEOUT_SECONDS)
        if removed:
            log.info("removed %d chunk(s) of %s", removed, task.file_path or task.doc_id)
        return removed

    def close(self) -> None:
        self.loop.stop()


def fill_stored(settings: Settings, state: StateStore) -> int:
    """If Redis has no set of the hashes written to the collection (an older dropvec made it, or
    Redis lost it) and no other worker is making it: record every hash the collection holds.
    How many rows were read."""
    if not state.claim_stored_fill(settings.collection):
        return 0
    rows = 0
    try:
        for hashes in iter_embed_hashes(settings):
            state.add_stored(settings.collection, hashes)
            rows += len(hashes)
    finally:
        state.end_stored_fill(settings.collection)
    log.info("listed the %d stored vectors of %r for reuse", rows, settings.collection)
    return rows


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> WorkerRuntime:
    """The process's runtime, created on first use (after fork, in prefork pools)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime(settings or Settings())
        return _runtime
