"""Everything a worker process holds for its lifetime: loop, model, store, state."""

from __future__ import annotations

import logging
import threading

from llama_index.core.schema import MetadataMode

from config.messages import EmbedTask, to_node
from config.settings import Settings
from dropvec.state import StateStore
from workers.embed import embedding_dim, load_embedder
from workers.loop import LoopThread
from workers.store import ChunkWriter, open_store

log = logging.getLogger(__name__)

#: A write that takes longer than this is treated as a store outage (and retried by Celery).
WRITE_TIMEOUT_SECONDS = 300


class WorkerRuntime:
    """Loads the model once, opens the store on the process's event loop, runs tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder = load_embedder(settings)
        self.dim = embedding_dim(self.embedder)
        self.loop = LoopThread()
        self.writer = self.loop.run(self._open_writer(), timeout=120)
        self.state = StateStore.from_url(settings.redis_url)

    async def _open_writer(self) -> ChunkWriter:
        return ChunkWriter(open_store(self.settings, self.dim, use_async=True), self.settings)

    def process(self, task: EmbedTask) -> int:
        """Embed the task's chunks batch by batch; each batch is written while the next embeds."""
        nodes = [to_node(chunk, task.doc_id) for chunk in task.chunks]
        size = self.settings.embed_batch_size
        pending = []
        for start in range(0, len(nodes), size):
            batch = nodes[start : start + size]
            texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in batch]
            for node, vector in zip(batch, self.embedder.get_text_embedding_batch(texts), strict=True):
                node.embedding = vector
            pending.append(self.loop.submit(self.writer.write(batch)))
        written = sum(f.result(WRITE_TIMEOUT_SECONDS) for f in pending)
        self.state.task_done(task.run_id, task.doc_id, task.task_index, written)
        return written

    def close(self) -> None:
        self.loop.stop()


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> WorkerRuntime:
    """The process's runtime, created on first use (after fork, in prefork pools)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime(settings or Settings())
        return _runtime
