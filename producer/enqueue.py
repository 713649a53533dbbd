"""Turning paths into queued tasks: the producer's one adapter to Redis/Celery."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from celery import Celery
from more_itertools import chunked, peekable

from dropvec.config.errors import InputFileError, ServiceUnavailable, SkippedFile, UnreadableFile
from dropvec.config.ids import doc_id_for, ids_digest
from dropvec.config.messages import EMBED_TASK, Chunk, EmbedTask
from dropvec.config.polling import poll
from dropvec.config.records import UNCHANGED, FileRecord, FileStatus, Outcome, Replaced, retired
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore
from dropvec.producer.chunk import Section, iter_chunks
from dropvec.producer.files import (
    Signature,
    expand,
    file_sha256,
    has_utf8_name,
    link_on_path,
    open_for_writing,
    signature,
)
from dropvec.producer.formats import Ocr
from dropvec.producer.pack import Pack, Packed, quarter, tasks_of
from dropvec.producer.read import is_supported, read_sections
from dropvec.producer.tokens import load_window
from dropvec.workers.app import create_app, publishing, send_removal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: Outcome
    reason: str = ""
    chunks: int = 0


@dataclass
class IngestReport:
    run_id: str
    outcomes: list[FileOutcome]
    #: Files not read because the producer was asked to stop; the next pass takes them.
    not_read: int = 0

    @property
    def chunks(self) -> int:
        return sum(o.chunks for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def unchanged(self) -> int:
        return sum(1 for o in self.outcomes if o.reason == UNCHANGED)

    def summary(self) -> str:
        """The pass's totals, in one line."""
        return (
            f"queued {self.count(Outcome.QUEUED)} file(s), {self.chunks} chunk(s); "
            f"removed {self.count(Outcome.REMOVED)}; skipped {self.count(Outcome.SKIPPED)} "
            f"({self.unchanged} unchanged), failed {self.count(Outcome.FAILED)}"
        )


def file_metadata(path: Path, before: Signature | None) -> dict[str, str | int | float]:
    """What every chunk of ``path`` carries about its file: where it is, its type (the extension,
    lower case, without the dot) and when it was modified (seconds since the epoch), the last
    three stored in fields of their own for filters at query time."""
    modified = (before[1] // 1_000_000_000) if before else 0
    return {
        "file_path": str(path), "file_name": path.name,
        "file_type": path.suffix.lower().lstrip("."), "modified": modified,
    }  # fmt: skip


class Producer:
    """Brings the store in line with files on disk. One instance per process; reusable across runs."""

    def __init__(
        self, settings: Settings, app: Celery, state: StateStore, stop: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.app = app
        self.state = state
        self.window = load_window(settings.embed_model_path)
        self.ocr = Ocr(
            enabled=settings.ocr == "auto", page_seconds=settings.ocr_page_seconds,
            max_pages=settings.ocr_max_pages, languages=settings.ocr_languages,
        )  # fmt: skip
        #: Set (by a signal handler, say) to end a pass after the file being read.
        self.stop = stop or threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, stop: threading.Event | None = None) -> Producer:
        """A producer with its own task queue and ledger clients."""
        return cls(settings, create_app(settings), StateStore.from_settings(settings), stop)

    def ingest(
        self, paths: Iterable[Path], *, deleted: Iterable[Path] = (), force: bool = False
    ) -> IngestReport:
        """Reconcile ``paths`` (files or folders) and ``deleted`` with what is indexed.

        New and changed files are queued, unchanged ones skipped. A file indexed under one of these
        paths that is no longer on disk is removed, unless a new file has its exact content: that
        one is a rename, and takes over the old file's vectors before the old chunks go.

        Once ``stop`` is set, the file being read is finished and the pass ends there (a file
        waiting for room in a full queue is left for the next pass).

        Symbolic links are never followed: a link, or a path through one, is skipped with that
        reason, and what was stored under such a path before is removed. Below the inbox, a link
        at any depth counts; elsewhere, those below the path named (see ``base_of``).
        """
        run_id = uuid.uuid4().hex
        self.state.start_run(run_id)
        roots = [p.absolute() for p in paths]
        present: dict[Path, Path] = {}  # each file found, and the folder its links are checked below
        for root in roots:
            if os.path.lexists(root):
                base = self.base_of(root)
                for path in expand([root], self.settings.ignore):
                    present.setdefault(path, base)
        gone = self._gone([*roots, *(p.absolute() for p in deleted)], set(present))
        known = {record.path for record in gone.values()}
        busy = open_for_writing(set(present))
        outcomes: list[FileOutcome] = []
        pack = Pack(
            self.app, self.state, run_id, self.settings.chunks_per_task,
            wait_for_room=self._wait_for_room, retire=self._send_removals,
        )  # fmt: skip
        try:
            for n, (path, base) in enumerate(present.items(), 1):
                if self.stop.is_set():
                    raise Stopped
                outcomes.append(
                    self.ingest_file(
                        path,
                        run_id,
                        base=base,
                        force=force,
                        renamed_from=gone,
                        busy=busy,
                        pack=pack,
                        last=n == len(present),
                    )  # fmt: skip
                )
            pack.send(last=True)
        except Stopped:
            unsent = {f.task.file_path for f in pack.files}  # (nothing of them is in the ledger yet)
            outcomes = [o for o in outcomes if o.path not in unsent]
            log.info("stopped: %d file(s) not read", len(present) - len(outcomes))
            return self._counted(IngestReport(run_id, outcomes, not_read=len(present) - len(outcomes)))
        for root in roots:
            if not os.path.lexists(root) and not any(
                p == str(root) or p.startswith(f"{root}/") for p in known
            ):
                outcomes.append(self.ingest_file(root, run_id))  # named, yet neither there nor indexed
        for doc_id, record in gone.items():
            outcomes.append(self._remove_gone(doc_id, record))
        return self._counted(IngestReport(run_id, outcomes))

    def _counted(self, report: IngestReport) -> IngestReport:
        """Add a pass's outcomes to the running totals (a file skipped as unchanged is "unchanged")."""
        counts = Counter("unchanged" if o.reason == UNCHANGED else o.status for o in report.outcomes)
        self.state.counters.count(
            {**{f"files:{k}": n for k, n in counts.items()}, "chunks:queued": report.chunks}
        )
        return report

    def base_of(self, path: Path) -> Path:
        """The folder below which a link on ``path`` is not followed: the inbox for a path in it
        (the inbox itself may be a link: it is the user's folder), else the folder that holds
        ``path`` (the path named may not be a link, nor anything below it)."""
        inbox = self.settings.inbox.absolute()
        return inbox if path.is_relative_to(inbox) else path.parent

    def _gone(self, roots: list[Path], present: set[Path]) -> dict[str, FileRecord]:
        """Records of files under ``roots`` that are no longer on disk (or lie behind a link
        now), by doc id."""
        gone = {}
        for root in roots:
            base = self.base_of(root)
            for path in self.state.paths_under(str(root)):
                if Path(path) not in present and not self._is_readable_file(Path(path), base):
                    doc_id = doc_id_for(path)
                    gone[doc_id] = self.state.record(doc_id) or FileRecord(path=path)
        return gone

    @staticmethod
    def _is_readable_file(path: Path, base: Path) -> bool:
        try:
            return path.is_file() and link_on_path(path, base) is None
        except ValueError:  # not below base
            return path.is_file()

    def _remove_gone(self, doc_id: str, record: FileRecord) -> FileOutcome:
        self.state.forget_file(doc_id, record.path)
        if record.generation:
            self._send_removals(record.path, [Replaced(doc_id, record.generation + 1)])
        log.info("removed %s", record.path)
        return FileOutcome(record.path, Outcome.REMOVED)

    def ingest_file(
        self,
        path: Path,
        run_id: str,
        *,
        base: Path | None = None,
        force: bool = False,
        renamed_from: dict[str, FileRecord] | None = None,
        busy: set[Path] | frozenset[Path] = frozenset(),
        pack: Pack | None = None,
        last: bool = False,
    ) -> FileOutcome:
        """Read, chunk and enqueue one file; tasks leave as soon as their chunks are ready. With a
        ``pack``, a file of fewer chunks than a task holds is read whole and goes in the pack.

        ``base``: no part of ``path`` below it may be a symbolic link (default: ``base_of(path)``).
        ``renamed_from``: records of files gone from disk; one with this file's content is taken
        over (and taken out of the mapping) as this file's previous name. ``busy``: files some
        process holds open for writing (skipped: they are read once complete). ``last``: the file
        ends its pass: its last tasks are smaller (``tasks_of``), and the pack leaves before them.

        A file deleted while it is read is removed; one that changes while it is read is skipped
        (the watcher reads it again once it settles). Either way no task of it is sent after that.
        """
        path = path.absolute()
        if not has_utf8_name(path):
            return self._bad_name(path, run_id)
        base = base or self.base_of(path)
        doc_id = doc_id_for(str(path))
        chunks = tasks = generation = 0
        sha = moved_from = ids = ""
        replaces: list[Replaced] = []
        packed: Packed | None = None
        try:
            before = signature(path)
            sha = self._hash(path, base)
            previous = self.state.record(doc_id)
            if not force and previous and previous.holds(sha, self.settings.model_key):
                raise SkippedFile(path, UNCHANGED)
            if path in busy:  # (an unchanged file held open stays as it is, above)
                raise SkippedFile(path, "open for writing by another process: still being written")
            replaces, moved_from = self._take_over(renamed_from or {}, sha)
            sections = read_sections(path, self.ocr)
            generation = self.state.next_generation()
            if (
                previous and previous.generation
            ):  # older versions may be stored: remove them once this one is in
                replaces.insert(0, Replaced(doc_id, generation))
            # a file is packed if it ends within its first task (read whole, one chunk past it
            # at most); while the pass starts (``Pack.starting``), within a quarter of one
            size, hurry = self.settings.chunks_per_task, pack.starting if pack is not None else 0
            chunks_read = peekable(self._chunks(sections, path, doc_id, generation, before))
            head = list(islice(chunks_read, quarter(size) if hurry else size))
            if pack is not None and head and not chunks_read and pack.fits(len(head)):
                _unchanged_since(path, before, base)
                task = EmbedTask(
                    run_id=run_id, doc_id=doc_id, generation=generation, file_path=str(path),
                    task_index=0, chunks=head,
                )  # fmt: skip
                old = (doc_id_for(moved_from), moved_from) if moved_from else None
                packed = Packed(task, sha, self.settings.model_key, tuple(replaces), old)
            else:
                batches = tasks_of(chain(head, chunks_read), size, taper=last, hurry=hurry)
                if last and pack is not None:
                    pack.send()  # (before this file's last tasks, which end the pass: tasks_of)
                with publishing(self.app) as send:
                    for batch in batches:
                        _unchanged_since(path, before, base)
                        self._wait_for_room()
                        if tasks == 0:
                            self.state.file_started(
                                run_id, doc_id, path=str(path), sha256=sha, model=self.settings.model_key,
                                generation=generation, replaces=replaces,
                            )  # fmt: skip
                            if moved_from:  # (only now: a pass stopped before finds the move again)
                                self.state.forget_file(doc_id_for(moved_from), moved_from)
                        task = EmbedTask(
                            run_id=run_id, doc_id=doc_id, generation=generation, file_path=str(path),
                            task_index=tasks, chunks=batch,
                        )  # fmt: skip
                        send(EMBED_TASK, task.model_dump(mode="json"))
                        if pack is not None:
                            pack.note_sent(len(batch))
                        ids = ids_digest((c.id for c in batch), ids)
                        chunks += len(batch)
                        tasks += 1
                _unchanged_since(path, before, base)
                if tasks == 0:
                    raise SkippedFile(path, "no text to index")
        except InputFileError as exc:
            started = tasks > 0
            return self._ended_early(exc, run_id, doc_id, path, sha, generation, started, replaces)
        except Stopped:
            raise  # the file is left for the next pass
        except ServiceUnavailable:
            raise  # the pass is offered again once the service is back
        except Exception as exc:
            # a fault of ours (or of a library) on this one file: it fails, the others go on
            log.debug("unexpected error on %s", path, exc_info=True)
            failure = UnreadableFile(path, f"unexpected error, see the log: {type(exc).__name__}: {exc}")
            return self._ended_early(failure, run_id, doc_id, path, sha, generation, tasks > 0, replaces)
        if packed is not None and pack is not None:  # (it is started and sent with its pack)
            pack.add(packed)
            chunks, tasks = len(packed.task.chunks), 1
        elif self.state.file_enqueued(
            run_id, doc_id, generation=generation, chunks=chunks, tasks=tasks, ids=ids
        ):
            # every task was done before the last one was sent: retire what this version replaces
            self._send_removals(str(path), replaces)
        log.info("queued %s: %d chunks in %d task(s)", path, chunks, tasks)
        moved = f"moved from {moved_from}" if moved_from else ""
        return FileOutcome(str(path), Outcome.QUEUED, reason=moved, chunks=chunks)

    def _chunks(
        self, sections: Iterable[Section], path: Path, doc_id: str, generation: int, before: Signature | None
    ) -> Iterator[Chunk]:
        """The chunks of version ``generation`` of the file at ``path`` (read as ``sections``)."""
        return iter_chunks(
            sections,
            doc_id=doc_id,
            file_metadata=file_metadata(path, before),
            tokens=self.window,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
            embed_keys=self.settings.embed_metadata_keys,
            generation=generation,
        )

    def version_of(self, path: Path, generation: int) -> StoredVersion:
        """What the store holds of version ``generation`` of the file at ``path`` if that version
        is this content, read and split as ``ingest`` would (nothing is sent): its chunk count
        and the digest of its ids, to compare with the store's. InputFileError if it cannot be read."""
        path = path.absolute()
        base = self.base_of(path)
        before = signature(path)
        sha = self._hash(path, base)
        doc_id, ids, count = doc_id_for(str(path)), "", 0
        for batch in chunked(
            self._chunks(read_sections(path, self.ocr), path, doc_id, generation, before), 1024
        ):
            ids, count = ids_digest((c.id for c in batch), ids), count + len(batch)
        _unchanged_since(path, before, base)
        return StoredVersion(sha, count, ids)

    def _ended_early(
        self,
        exc: InputFileError,
        run_id: str,
        doc_id: str,
        path: Path,
        sha: str,
        generation: int,
        started: bool,
        replaces: list[Replaced],
    ) -> FileOutcome:
        """A file skipped or failed here. Unless it is unchanged, its older chunks are removed:
        what is searchable is what the folder holds now."""
        gone = isinstance(exc, (NoSuchFile, Vanished))
        if gone and (record := self.state.record(doc_id)):
            # deleted while this pass ran: what its new version was to replace goes too
            self._send_removals(str(path), [r for r in replaces if r.doc_id != doc_id])
            return self._remove_gone(doc_id, record)
        status = FileStatus.SKIPPED if isinstance(exc, SkippedFile) else FileStatus.FAILED
        unchanged = exc.reason == UNCHANGED
        previous = 0 if unchanged else (self.state.record(doc_id) or FileRecord()).generation
        self.state.file_ended_early(
            run_id, doc_id, path=str(path), status=status, reason=exc.reason, sha256=sha,
            model=self.settings.model_key, generation=generation or previous, started=started,
            keep_file_state=unchanged or gone, listed=not unchanged,
        )  # fmt: skip
        if not unchanged and (previous or generation):
            replaces = retired(doc_id, replaces, failed_at=max(previous, generation))
        self._send_removals(str(path), replaces)
        log.info("%s %s: %s", status, path, exc.reason)
        return FileOutcome(str(path), Outcome(status), exc.reason)

    def _bad_name(self, path: Path, run_id: str) -> FileOutcome:
        """A name that is not valid UTF-8 cannot be stored as text (in Redis or Milvus): skipped,
        without a file record, and shown with its undecodable bytes replaced."""
        shown = os.fsencode(path).decode("utf-8", "replace")
        reason = "the file name is not valid UTF-8: rename the file"
        self.state.file_ended_early(
            run_id, "", path=shown, status=FileStatus.SKIPPED, reason=reason, keep_file_state=True
        )  # fmt: skip
        log.info("skipped %s: %s", shown, reason)
        return FileOutcome(shown, Outcome.SKIPPED, reason)

    def _wait_for_room(self) -> None:
        """Back-pressure: while the queue holds ``max_queue_depth`` tasks, wait for workers, or
        for ``stop`` (then raise Stopped: the file is left for the next pass)."""
        if self.state.queue_depth() < self.settings.max_queue_depth:
            return
        log.info("queue full (%d tasks): waiting for workers", self.settings.max_queue_depth)
        room = lambda: self.state.queue_depth() < self.settings.max_queue_depth  # noqa: E731
        if not poll(room, interval=0.2, stop=self.stop):
            raise Stopped

    def _hash(self, path: Path, base: Path) -> str:
        """The file's content hash, once it is known to be a regular file of a supported type,
        reached through no symbolic link below ``base``."""
        _no_link(path, base)
        if not path.exists():
            raise NoSuchFile(path, "no such file")
        if not path.is_file():
            raise SkippedFile(path, "not a regular file")
        if not is_supported(path):
            raise SkippedFile(path, f"unsupported file type {path.suffix.lower() or '(no extension)'}")
        try:
            size = path.stat().st_size
            if size > self.settings.max_file_bytes:
                limit = self.settings.max_file_bytes / 2**20
                raise SkippedFile(
                    path, f"{size / 2**20:.0f} MB, over the {limit:.0f} MB limit (DROPVEC_MAX_FILE_BYTES)"
                )
            return file_sha256(path)
        except OSError as exc:
            raise UnreadableFile(path, f"cannot open: {exc.strerror or exc}") from exc

    def _take_over(self, gone: dict[str, FileRecord], sha: str) -> tuple[list[Replaced], str]:
        """A gone file with content ``sha`` (by this model) becomes this file's previous name:
        what it replaces, and the old path. (Its record is dropped by the caller once this file
        is started: see ``_moved_from``.)"""
        for doc_id, record in gone.items():
            if record.holds(sha, self.settings.model_key):
                del gone[doc_id]
                return [Replaced(doc_id, record.generation + 1)], record.path
        return [], ""

    def _send_removals(self, path: str, targets: list[Replaced]) -> None:
        for target in targets:
            send_removal(self.app, target.task(path))


@dataclass(frozen=True)
class StoredVersion:
    """A file's content hash, and the count and id digest of its chunks at one version."""

    sha256: str
    chunks: int
    ids: str


class NoSuchFile(UnreadableFile):
    """A path named to ingest that is not there (and was not indexed either)."""


class Vanished(SkippedFile):
    """A file deleted while it was read."""


class Stopped(Exception):
    """The producer was asked to stop while a file waited for room in the queue."""


def _no_link(path: Path, base: Path) -> None:
    """Raise SkippedFile if ``path`` is, or lies behind, a symbolic link below ``base``."""
    link = link_on_path(path, base)
    if link == path:
        raise SkippedFile(path, "a symbolic link: links are not followed")
    if link is not None:
        raise SkippedFile(path, f"reached through the symbolic link {link}: links are not followed")


def _unchanged_since(path: Path, before: Signature | None, base: Path) -> None:
    """Raise if the file went away, was written to since ``before`` (taken before it was read), or
    a folder on its path was swapped for a link meanwhile."""
    _no_link(path, base)
    now = signature(path)
    if now is None:
        raise Vanished(path, "deleted while it was read")
    if now != before:
        raise SkippedFile(path, "changed while it was read: still being written?")
