"""Small files travel together: the one task of each of several small files, sent as one message
(``FilesTask``), so that a worker's model batches are full whatever the files' sizes.

Each file keeps its own state in the ledger: it is started, sent and counted as a file of one
task, only in a round trip shared with the others of its pack. A pack leaves once it holds a
task's worth of chunks (``chunks_per_task``) or ``MAX_FILES_PER_TASK`` files, and at the end of
every pass. Until a task's worth of the pass has left (the workers may be waiting), packs and a
file's tasks hold a quarter of that, so that several workers start at once. A pass asked to stop
leaves the files of its unsent pack unread (nothing of them is in the ledger yet), for the next
pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from celery import Celery
from more_itertools import chunked, constrained_batches

from dropvec.config.ids import ids_digest
from dropvec.config.messages import (
    EMBED_FILES_TASK,
    EMBED_TASK,
    MAX_FILES_PER_TASK,
    MAX_TASK_TEXT_CHARS,
    EmbedTask,
    FilesTask,
)
from dropvec.config.records import Replaced
from dropvec.ledger.state import FileStart, StateStore
from dropvec.workers.app import publishing

T = TypeVar("T")


def quarter(size: int) -> int:
    """The chunks of the small tasks that start and end a pass: a quarter of a task's (at least 1)."""
    return max(1, size // 4)


def tasks_of(chunks: Iterable[T], size: int, *, taper: bool = False, hurry: int = 0) -> Iterator[list[T]]:
    """The chunks of one file in tasks of ``size``, each sent as soon as it is read.

    ``hurry``: the file's first ``hurry`` chunks go in tasks of a quarter of ``size`` (the pass's
    first task's worth, while the workers wait: several start at once, and sooner). ``taper``
    (the file that ends a pass): up to its last ``2 * size`` chunks go in quarters, so that the
    workers share them, where one full task taken last would keep one worker busy while the
    others wait (as long as a task takes: 1.5 s on a core at ``size`` 128); a file of one task
    stays one task (it may travel in a pack)."""
    small, tail = quarter(size), 2 * size
    chunks = iter(chunks)
    sent = False
    if hurry:
        head = 0
        for part in chunked(islice(chunks, hurry), small):
            head += len(part)
            yield part
        if head < hurry:
            return
        sent = True
    if not taper:
        yield from chunked(chunks, size)
        return
    pending: list[T] = []
    for chunk in chunks:
        pending.append(chunk)
        if len(pending) == (size if not sent else size + tail):
            yield pending[:size]
            pending, sent = pending[size:], True
    if not sent and len(pending) <= size:
        if pending:
            yield pending
        return
    while len(pending) > tail:
        yield pending[:size]
        pending = pending[size:]
    yield from chunked(pending, small)


@dataclass(frozen=True)
class Packed:
    """A small file read whole, waiting in its pack: its one task, and what it replaces."""

    task: EmbedTask
    sha256: str
    model: str
    replaces: tuple[Replaced, ...]
    #: The record of the file this one was moved from (doc id, path): dropped once this one is
    #: started, not before, so that a pass stopped before the pack left finds the move again.
    moved_from: tuple[str, str] | None = None

    @property
    def text(self) -> int:
        return sum(len(c.text) for c in self.task.chunks)


class Pack:
    """The small files of one pass waiting to be sent together."""

    def __init__(
        self,
        app: Celery,
        state: StateStore,
        run_id: str,
        chunks: int,
        *,
        wait_for_room: Callable[[], None],
        retire: Callable[[str, list[Replaced]], None],
    ) -> None:
        self.app, self.state, self.run_id, self.limit = app, state, run_id, chunks
        self.wait_for_room, self.retire = wait_for_room, retire
        self.files: list[Packed] = []
        #: Chunks of the pass sent so far, packed or in a file's own tasks (``note_sent``).
        self.sent_chunks = 0

    @property
    def starting(self) -> int:
        """Chunks the pass still sends in quarter tasks: until it has sent a task's worth, the
        workers may be waiting (0 once it has)."""
        return max(0, self.limit - self.sent_chunks)

    def note_sent(self, chunks: int) -> None:
        """Count ``chunks`` as sent in this pass (a pack's, or a file's own task's)."""
        self.sent_chunks += chunks

    def fits(self, chunks: int) -> bool:
        """Whether a file of ``chunks`` chunks is small enough to be packed."""
        return chunks < self.limit

    def add(self, file: Packed) -> None:
        """Pack ``file``; the pack is sent first if the file would not fit in it (in chunks, or in
        the text a message may hold)."""
        if self.files and (
            self.chunks + len(file.task.chunks) > self.limit
            or sum(f.text for f in self.files) + file.text > MAX_TASK_TEXT_CHARS
        ):
            self.send()
        self.files.append(file)
        full = quarter(self.limit) if self.starting else self.limit
        if self.chunks >= full or len(self.files) >= MAX_FILES_PER_TASK:
            self.send()

    @property
    def chunks(self) -> int:
        return sum(len(f.task.chunks) for f in self.files)

    def send(self, *, last: bool = False) -> None:
        """Send the pack (after waiting for room in the queue: may raise ``Stopped``), each file
        started before and marked sent after, as a file of one task. ``last``: the pack ends its
        pass, and goes in messages of a quarter of a task's chunks where its files allow (as the
        last tasks of a file do, ``tasks_of``)."""
        if not self.files:
            return
        self.wait_for_room()
        files, self.files = self.files, []
        self.note_sent(sum(len(f.task.chunks) for f in files))
        starts = [
            FileStart(f.task.doc_id, f.task.file_path, f.sha256, f.model, f.task.generation, f.replaces)
            for f in files
        ]
        self.state.files_started(self.run_id, starts)
        for f in files:
            if f.moved_from:
                self.state.forget_file(*f.moved_from)
        most = quarter(self.limit) if last else self.limit
        with publishing(self.app) as send:
            for group in constrained_batches(files, most, get_len=lambda f: len(f.task.chunks), strict=False):
                if len(group) == 1:
                    send(EMBED_TASK, group[0].task.model_dump(mode="json"))
                else:
                    send(EMBED_FILES_TASK, FilesTask(parts=[f.task for f in group]).model_dump(mode="json"))
        sent = [
            (f.task.doc_id, f.task.generation, len(f.task.chunks), 1, ids_digest(c.id for c in f.task.chunks))
            for f in files
        ]
        for f, indexed in zip(files, self.state.files_enqueued(self.run_id, sent), strict=True):
            if indexed:  # every task was done before it was marked sent: retire what it replaces
                self.retire(f.task.file_path, list(f.replaces))
