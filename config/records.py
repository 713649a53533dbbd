"""Typed records and policies the layers share: a file's status, a pass's outcome per file, what a
task's counting did, and the one rule for what a finished file version retires.

Core: imports nothing of dropvec's but the message contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum

from dropvec.config.messages import RemoveTask


class _Text(str, Enum):
    """An enum whose members are their strings, in comparisons, ``str()`` and f-strings alike."""

    def __str__(self) -> str:
        return str(self.value)


class FileStatus(_Text):
    """Where a file stands (as stored in the ledger: the values are the stored strings)."""

    QUEUED = "queued"
    INDEXING = "indexing"
    INDEXED = "indexed"
    SKIPPED = "skipped"
    FAILED = "failed"


#: States in which a file's current version is, or will be, in the store.
LIVE = (FileStatus.QUEUED, FileStatus.INDEXING, FileStatus.INDEXED)


@dataclass(frozen=True)
class FileRecord:
    """A file's record in the ledger (``{p}:file:{doc_id}``), typed; empty fields as their zero."""

    path: str = ""
    status: FileStatus | None = None
    reason: str = ""
    sha256: str = ""
    model: str = ""
    #: The current version; 0: never queued.
    generation: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    #: 0 until the producer has sent the version's last task.
    task_count: int = 0
    #: The digest of the version's chunk ids (``config.ids.ids_digest``), once its last task is sent.
    ids: str = ""
    #: What the version replaces, once it is done.
    replaces: tuple[Replaced, ...] = ()
    queued_at: float | None = None
    indexed_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def of(cls, fields: dict[str, str]) -> FileRecord:
        """From the ledger's hash (unknown fields are left out)."""
        number = lambda key: int(fields.get(key) or 0)  # noqa: E731
        when = lambda key: float(fields[key]) if fields.get(key) else None  # noqa: E731
        status = fields.get("status")
        return cls(
            path=fields.get("path", ""), status=FileStatus(status) if status else None,
            reason=fields.get("reason", ""), sha256=fields.get("sha256", ""), model=fields.get("model", ""),
            generation=number("generation"), chunks_total=number("chunks_total"),
            chunks_done=number("chunks_done"), chunks_embedded=number("chunks_embedded"),
            chunks_reused=number("chunks_reused"), task_count=number("task_count"),
            ids=fields.get("ids", ""),
            replaces=tuple(Replaced(d, int(g)) for d, g in json.loads(fields.get("replaces") or "[]")),
            queued_at=when("queued_at"), indexed_at=when("indexed_at"), updated_at=when("updated_at"),
        )  # fmt: skip

    def holds(self, sha256: str, model: str) -> bool:
        """Whether content ``sha256``, embedded by ``model``, is (or is being) indexed. A version
        whose tasks were not all sent (the producer died half-way through it) does not count."""
        return (
            self.sha256 == sha256
            and self.model == model
            and self.status in LIVE
            and bool(self.generation)
            and (self.status == FileStatus.INDEXED or self.task_count > 0)
        )


class Outcome(_Text):
    """What one pass of the producer did with a file."""

    QUEUED = "queued"
    SKIPPED = "skipped"
    FAILED = "failed"
    REMOVED = "removed"


#: Reason given for a file skipped because its content and model are those already indexed.
UNCHANGED = "unchanged since it was last ingested"


class TaskCount(IntEnum):
    """What counting a finished task in the ledger did."""

    NOT_COUNTED = 0  # counted before (a redelivery), or of a version no longer current
    COUNTED = 1
    FILE_INDEXED = 2  # counted, and it was the file's last task


@dataclass(frozen=True)
class Replaced:
    """A file version to remove once the version replacing it is done: every chunk of ``doc_id``
    below ``below_generation``."""

    doc_id: str
    below_generation: int

    def task(self, file_path: str = "") -> RemoveTask:
        return RemoveTask(doc_id=self.doc_id, file_path=file_path, below_generation=self.below_generation)


def retired(doc_id: str, replaces: Iterable[Replaced], *, failed_at: int = 0) -> list[Replaced]:
    """What a file's version retires once it ends: the one rule, for the producer, the workers and
    a task that gave up.

    Indexed (``failed_at`` 0): what it replaces (its own older versions, the file it was moved
    from). Failed, or given up, at generation ``failed_at``: all of the file up to that version as
    well, so that nothing of it stays searchable; the other files it was to replace go too.
    """
    if not failed_at:
        return list(replaces)
    return [Replaced(doc_id, failed_at + 1), *(r for r in replaces if r.doc_id != doc_id)]
