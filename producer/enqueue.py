"""Turning paths into queued tasks: the producer's one adapter to Redis/Celery."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from config.messages import EMBED_TASK, Chunk, EmbedTask
from config.settings import QUEUE, Settings
from dropvec.errors import InputFileError, SkippedFile, UnreadableFile
from dropvec.state import StateStore, Status
from producer.chunk import Section, doc_id_for, iter_chunks
from producer.read import read_sections
from producer.tokens import load_window

log = logging.getLogger(__name__)

#: Names that are never ingested: hidden files and the partial/lock files editors and copiers leave.
IGNORED_PREFIXES = (".", "~$", ".~lock.")
IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")
#: Reason given for a file skipped because its content and model are those already indexed.
UNCHANGED = "unchanged since it was last ingested"


def is_ignored(path: Path) -> bool:
    name = path.name
    return name.startswith(IGNORED_PREFIXES) or name.endswith(IGNORED_SUFFIXES)


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and the files under folders named, in a stable order; symlinks not followed."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    child = Path(root) / name
                    if not is_ignored(child):
                        yield child
        else:
            yield path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # queued | skipped | failed
    reason: str = ""
    chunks: int = 0


@dataclass
class IngestReport:
    run_id: str
    outcomes: list[FileOutcome]

    @property
    def chunks(self) -> int:
        return sum(o.chunks for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def unchanged(self) -> int:
        return sum(1 for o in self.outcomes if o.reason == UNCHANGED)


class Producer:
    """Reads, chunks and enqueues files. One instance per process; safe to reuse across runs."""

    def __init__(self, settings: Settings, app: Celery, state: StateStore) -> None:
        self.settings = settings
        self.app = app
        self.state = state
        self.window = load_window(settings.embed_model_path)

    def ingest(self, paths: Iterable[Path], *, force: bool = False) -> IngestReport:
        run_id = uuid.uuid4().hex
        self.state.start_run(run_id)
        outcomes = [self.ingest_file(path, run_id, force=force) for path in expand(paths)]
        return IngestReport(run_id, outcomes)

    def ingest_file(self, path: Path, run_id: str, *, force: bool = False) -> FileOutcome:
        """Read, chunk and enqueue one file; tasks leave as soon as their chunks are ready."""
        path = path.absolute()
        doc_id = doc_id_for(str(path))
        chunks = tasks = 0
        try:
            sections, sha = self._read(path, doc_id, force=force)
            batches = _batched(
                iter_chunks(
                    sections,
                    doc_id=doc_id,
                    file_metadata={"file_path": str(path), "file_name": path.name},
                    tokens=self.window,
                    chunk_size=self.settings.chunk_size,
                    chunk_overlap=self.settings.chunk_overlap,
                    embed_keys=self.settings.embed_metadata_keys,
                ),
                self.settings.chunks_per_task,
            )
            with self.app.producer_or_acquire() as publisher:
                for batch in batches:
                    if tasks == 0:
                        self.state.file_started(
                            run_id, doc_id, path=str(path), sha256=sha, model=self.settings.embed_model
                        )
                    task = EmbedTask(
                        run_id=run_id, doc_id=doc_id, file_path=str(path), task_index=tasks, chunks=batch
                    )
                    self.app.send_task(
                        EMBED_TASK, args=[task.model_dump(mode="json")], queue=QUEUE, producer=publisher
                    )
                    chunks += len(batch)
                    tasks += 1
            if tasks == 0:
                raise SkippedFile(path, "no text to index")
        except InputFileError as exc:
            status: Status = "skipped" if isinstance(exc, SkippedFile) else "failed"
            self.state.file_ended_early(
                run_id, doc_id, path=str(path), status=status, reason=exc.reason, started=tasks > 0,
                keep_file_state=exc.reason == UNCHANGED,
            )  # fmt: skip
            log.info("%s %s: %s", status, path, exc.reason)
            return FileOutcome(str(path), status, exc.reason)
        self.state.file_enqueued(run_id, doc_id, chunks=chunks, tasks=tasks)
        log.info("queued %s: %d chunks in %d tasks", path, chunks, tasks)
        return FileOutcome(str(path), "queued", chunks=chunks)

    def _read(self, path: Path, doc_id: str, *, force: bool) -> tuple[list[Section], str]:
        """The file's sections and content hash; nothing is enqueued if this fails."""
        if not path.exists():
            raise UnreadableFile(path, "no such file")
        if not path.is_file():
            raise SkippedFile(path, "not a regular file")
        try:
            sha = file_sha256(path)
        except OSError as exc:
            raise UnreadableFile(path, f"cannot open: {exc.strerror or exc}") from exc
        previous = self.state.get_file(doc_id)
        if (
            not force
            and previous.get("sha256") == sha
            and previous.get("model") == self.settings.embed_model
            and previous.get("status") in ("queued", "indexing", "indexed")
        ):
            raise SkippedFile(path, UNCHANGED)
        return read_sections(path), sha


def _batched(chunks: Iterator[Chunk], size: int) -> Iterator[list[Chunk]]:
    batch: list[Chunk] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
