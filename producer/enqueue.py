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

from config.messages import EMBED_TASK, EmbedTask
from config.settings import QUEUE, Settings
from dropvec.errors import InputFileError, SkippedFile, UnreadableFile
from dropvec.state import StateStore
from producer.chunk import chunk_sections, doc_id_for
from producer.read import read_sections
from producer.tokens import TokenWindow, load_window

log = logging.getLogger(__name__)

#: Names that are never ingested: hidden files and the partial/lock files editors and copiers leave.
IGNORED_PREFIXES = (".", "~$", ".~lock.")
IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")


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


class Producer:
    """Reads, chunks and enqueues files. One instance per process; safe to reuse across runs."""

    def __init__(
        self, settings: Settings, app: Celery, state: StateStore, window: TokenWindow | None = None
    ) -> None:
        self.settings = settings
        self.app = app
        self.state = state
        self.window = window or load_window(settings.embed_model_path)

    def ingest(self, paths: Iterable[Path], *, force: bool = False) -> IngestReport:
        run_id = uuid.uuid4().hex
        self.state.start_run(run_id)
        outcomes = [self.ingest_file(path, run_id, force=force) for path in expand(paths)]
        return IngestReport(run_id, outcomes)

    def ingest_file(self, path: Path, run_id: str, *, force: bool = False) -> FileOutcome:
        path = path.absolute()
        doc_id = doc_id_for(str(path))
        try:
            tasks, sha = self._prepare(path, doc_id, run_id, force=force)
        except InputFileError as exc:
            status = "skipped" if isinstance(exc, SkippedFile) else "failed"
            self.state.file_ended_early(run_id, doc_id, path=str(path), status=status, reason=exc.reason)
            log.info("%s %s: %s", status, path, exc.reason)
            return FileOutcome(str(path), status, exc.reason)
        chunks = sum(len(t.chunks) for t in tasks)
        self.state.file_queued(
            run_id,
            doc_id,
            path=str(path),
            sha256=sha,
            chunks=chunks,
            tasks=len(tasks),
            model=self.settings.embed_model,
        )
        with self.app.producer_or_acquire() as publisher:
            for task in tasks:
                self.app.send_task(
                    EMBED_TASK, args=[task.model_dump(mode="json")], queue=QUEUE, producer=publisher
                )
        log.info("queued %s: %d chunks in %d tasks", path, chunks, len(tasks))
        return FileOutcome(str(path), "queued", chunks=chunks)

    def _prepare(self, path: Path, doc_id: str, run_id: str, *, force: bool) -> tuple[list[EmbedTask], str]:
        if not path.exists():
            raise SkippedFile(path, "no such file")
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
            raise SkippedFile(path, "unchanged since it was last ingested")
        sections = read_sections(path)
        chunks = chunk_sections(
            sections,
            doc_id=doc_id,
            file_metadata={"file_path": str(path), "file_name": path.name},
            tokens=self.window,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
            embed_keys=self.settings.embed_metadata_keys,
        )
        if not chunks:
            raise SkippedFile(path, "no text to index")
        n = self.settings.chunks_per_task
        batches = [chunks[i : i + n] for i in range(0, len(chunks), n)]
        tasks = [
            EmbedTask(
                run_id=run_id,
                doc_id=doc_id,
                file_path=str(path),
                task_index=i,
                task_count=len(batches),
                chunks=batch,
            )
            for i, batch in enumerate(batches)
        ]
        return tasks, sha
