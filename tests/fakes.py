"""In-memory stand-ins for the ports, for unit tests of the pipeline's logic in milliseconds.

Each implements the same small protocol as the real adapter and nothing more (in the spirit of
dramatiq's ``StubBroker``): ``MemoryQueue`` for the Celery app the producer sends through,
``MemoryStore`` for the Milvus writer, ``FakeEmbedder`` for the model. The ledger is the real
``StateStore``, with its real Lua scripts, on fakeredis (a fake of Redis, not of dropvec).
The integration tests keep the real services.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fakeredis

from dropvec.config import bm25
from dropvec.config.bm25 import TermCounts
from dropvec.config.errors import ServiceUnavailable
from dropvec.config.messages import (
    EMBED_FILES_TASK,
    EMBED_TASK,
    REMOVE_TASK,
    EmbedTask,
    FilesTask,
    RemoveTask,
)
from dropvec.ledger.state import StateStore


def memory_ledger() -> StateStore:
    return StateStore(fakeredis.FakeRedis(decode_responses=True))


@dataclass
class MemoryQueue:
    """What the producer needs of a Celery app: ``send_task`` and ``producer_or_acquire``."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Called after each task is sent (a test's hook, e.g. to delete the file being read).
    after_send: Callable[[str, dict[str, Any]], None] | None = None

    def send_task(self, name: str, args: Sequence[Any], queue: str = "", **options: Any) -> None:
        self.sent.append((name, dict(args[0])))
        if self.after_send is not None:
            self.after_send(name, dict(args[0]))

    @contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        taken, self.sent = self.sent, []
        return taken


@dataclass
class Row:
    doc_id: str
    generation: int
    file_path: str
    chunk_index: int
    text: str
    embed_hash: str
    embedding: list[float]


class MemoryStore:
    """What the worker runtime needs of its Milvus writer, on a dict of rows by id."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.on_write: Callable[[float], None] | None = None
        self.avgdl = 0.0
        self._terms = TermCounts()

    def set_avgdl(self, avgdl: float) -> None:
        self.avgdl = avgdl

    def take_terms(self) -> TermCounts:
        terms, self._terms = self._terms, TermCounts()
        return terms

    def _gone(self, keys: Sequence[str]) -> None:
        for key in keys:
            if (row := self.rows.pop(key, None)) is not None:
                self._terms.add(bm25.terms(row.text), sign=-1)

    async def stored_vectors(self, hashes: Sequence[str]) -> dict[str, list[float]]:
        wanted = set(hashes)
        return {r.embed_hash: r.embedding for r in self.rows.values() if r.embed_hash in wanted}

    async def write(self, nodes: Sequence[Any], *, maybe_stored: bool = True) -> int:
        """As Milvus's insert: a row whose id is stored already would be stored twice, so a task
        run again must say so (``maybe_stored``), and those rows are not written again."""
        if not maybe_stored:
            twice = [n.node_id for n in nodes if n.node_id in self.rows]
            assert not twice, f"chunks written twice, by a task not marked as run before: {twice}"
        nodes = [n for n in nodes if n.node_id not in self.rows]
        for node in nodes:
            m = node.metadata
            self._terms.add(bm25.terms(node.text))
            self.rows[node.node_id] = Row(
                node.ref_doc_id, int(m["generation"]), m["file_path"], int(m["chunk_index"]), node.text,
                m["embed_hash"], list(node.embedding),
            )  # fmt: skip
        if self.on_write is not None:
            self.on_write(0.0)
        return len(nodes)

    async def delete_ids(self, ids: Sequence[str]) -> None:
        self._gone(ids)

    async def remove(self, doc_id: str, below_generation: int) -> int:
        gone = [k for k, r in self.rows.items() if r.doc_id == doc_id and r.generation < below_generation]
        self._gone(gone)
        return len(gone)


class FakeEmbedder:
    """Deterministic vectors from the text's hash; counts what it embedded."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.embedded: list[str] = []

    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]:
        self.embedded += texts
        return [[b / 255 for b in hashlib.sha256(t.encode()).digest()[: self.dim]] for t in texts]


def deliver(queue: MemoryQueue, runtime: Any, *, twice: bool = False) -> int:
    """Hand every queued task to ``runtime`` as a worker would (``twice``: each delivered twice,
    as after a lost acknowledgement), until the queue is empty; how many were handed. A task that
    raises other than for a service down gives up, as Celery's ``on_failure`` has it do."""

    rerun: set[tuple[str, int, int]] = set()  # the parts of failed packs: queued as run before

    def requeue(parts: Sequence[EmbedTask]) -> None:
        rerun.update((p.doc_id, p.generation, p.task_index) for p in parts)
        queue.sent.extend((EMBED_TASK, part.model_dump(mode="json")) for part in parts)

    handed = 0
    while batch := queue.take():
        for name, message in batch:
            for delivery in range(2 if twice else 1):
                if name == EMBED_TASK:
                    task = EmbedTask.model_validate(message)
                    again = delivery > 0 or (task.doc_id, task.generation, task.task_index) in rerun
                    try:
                        runtime.process(task, again=again)
                    except ServiceUnavailable:
                        raise
                    except Exception as exc:  # noqa: BLE001 (the task gives up)
                        for removal in runtime.give_up([task], f"{type(exc).__name__}: {exc}"):
                            queue.sent.append((REMOVE_TASK, removal.model_dump(mode="json")))
                elif name == EMBED_FILES_TASK:
                    runtime.process_pack(FilesTask.model_validate(message).parts, requeue, again=delivery > 0)
                elif name == REMOVE_TASK:
                    runtime.remove(RemoveTask.model_validate(message))
                else:
                    raise AssertionError(f"a task nobody takes: {name}")
                handed += 1
    return handed
