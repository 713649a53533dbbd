"""Bringing the index in line with the folder with the least work (``repair``, after a ``check``),
a ledger rebuilt from the collection and the folder after Redis lost it (``adopt``), and a
collection that Milvus lost noticed at the start of a watch (``recover``)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dropvec.check import Finding, Report, StoredDoc, check, read_store
from dropvec.config.errors import InputFileError
from dropvec.config.ids import doc_id_for
from dropvec.config.records import FileStatus, Outcome
from dropvec.config.settings import Settings
from dropvec.ledger.state import RunProgress, StateStore
from dropvec.producer.enqueue import Producer
from dropvec.status import follow_run
from dropvec.workers.store import count_rows, delete_rows

log = logging.getLogger(__name__)


@dataclass
class Repaired:
    """What a repair did, and the check after it."""

    adopted: int = 0
    requeued: int = 0
    removed: int = 0
    rows_deleted: int = 0
    progress: RunProgress | None = None
    after: Report | None = None

    @property
    def embedded(self) -> int:
        return self.progress.chunks_embedded if self.progress else 0

    @property
    def reused(self) -> int:
        return self.progress.chunks_reused if self.progress else 0


#: A repair stops following its run once no chunk or file of it has been counted for this long
#: (a task lost with a killed worker, a file replaced by a newer version: the run never ends).
STALL_SECONDS = 300.0
#: Findings a file is ingested again for (its vectors reused where they are stored).
REINGEST = (Finding.MISSING, Finding.EXTRA, Finding.STUCK, Finding.CHANGED, Finding.UNINDEXED)


def repair(
    settings: Settings,
    report: Report,
    stop: threading.Event,
    *,
    folder: Path | None = None,
    on_progress: Callable[[RunProgress], None] = lambda p: None,
    timeout: float | None = None,
) -> Repaired:
    """Make the index match the folder with the least work: rows of files the ledger lost are
    adopted where they are the file's chunks; files missing chunks, with rows that are not theirs,
    stuck, changed or not indexed are ingested again (vectors reused where stored, embedded only
    where not: the run's counts say which); files gone are removed; orphan rows deleted, once the
    run is done (a file ingested again may reuse their vectors). Then checked again."""
    done = Repaired()
    producer = Producer.from_settings(settings, stop)
    lost = {
        p.doc_id
        for p in report.problems
        if p.finding == Finding.ORPHANS and p.unknown and os.path.isfile(p.path)
    }
    adopted, changed = adopt(settings, producer, read_store(settings), only=lost) if lost else ([], [])
    done.adopted = len(adopted)
    # (a file of the ledger that is not on this disk may be another host's: left to its producer)
    again = sorted(
        {p.path for p in report.problems if p.finding in REINGEST and p.path and os.path.lexists(p.path)}
        - set(adopted)
        | set(changed)
    )
    gone = sorted({p.path for p in report.problems if p.finding == Finding.GONE})
    if again or gone:
        ingested = producer.ingest([Path(p) for p in again], deleted=[Path(p) for p in gone], force=True)
        done.requeued = sum(1 for o in ingested.outcomes if o.status == Outcome.QUEUED)
        done.removed = sum(1 for o in ingested.outcomes if o.status == Outcome.REMOVED)
        if done.requeued:
            done.progress, _ = follow_run(
                settings, ingested.run_id, timeout=timeout, stop=stop, on_progress=on_progress,
                stall=STALL_SECONDS,
            )  # fmt: skip
    _wait_for_removals(settings, stop)
    if stop.is_set():
        return done  # (the run goes on in the workers; orphans are left for the next check)
    # orphans of the files this repair was about, found again now that its run is done (a file
    # ingested again may have reused their vectors); each version's rows by name, so that a
    # version written since is never touched
    about = {p.doc_id for p in report.problems if p.doc_id}
    for p in check(settings, folder).problems:
        if p.finding == Finding.ORPHANS and p.doc_id in about and p.generations:
            done.rows_deleted += _delete_counted(settings, producer.state, p.doc_id, p.generations)
    done.after = check(settings, folder, rebuild_hashes=True)
    return done


def _delete_counted(settings: Settings, state: StateStore, doc_id: str, generations: Iterable[int]) -> int:
    """``delete_rows`` of those generations of file ``doc_id``, with the file's turn to remove
    (``TermStats.removing``), and their terms taken off BM25's statistics; how many rows."""
    with state.terms.removing(settings.collection, doc_id):
        removed = delete_rows(settings, doc_id, list(generations))
    state.terms.apply(settings.collection, removed.negated())
    return removed.docs


def _wait_for_removals(settings: Settings, stop: threading.Event, timeout: float = 300) -> None:
    state = StateStore.from_settings(settings)
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        alive = state.tasks_alive()
        if not (alive.removals or alive.versions):
            return
        stop.wait(0.5)


def adopt(
    settings: Settings, producer: Producer, docs: dict[str, StoredDoc], *, only: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """Give the files whose rows the collection holds, and the ledger does not know, their record
    back, from the file and its rows: a version whose rows are exactly the file's chunks is
    indexed as it stands (nothing embedded, nothing written; rows of its older versions deleted);
    one that is not, or a file that cannot be read here, is recorded as changed, and its next
    pass replaces it, reusing the vectors. The paths adopted, and those recorded as changed."""
    state = producer.state
    wanted = set(only) if only is not None else None
    adopted: list[str] = []
    changed: list[str] = []
    for doc_id, stored in docs.items():
        if (
            (wanted is not None and doc_id not in wanted)
            or not stored.path
            or doc_id_for(stored.path) != doc_id
        ):
            continue  # (a row that names another file's path is an orphan, and stays one)
        generation = max(stored.rows)
        try:
            version = producer.version_of(Path(stored.path), generation)
        except InputFileError:
            version = None
        whole = (
            version is not None
            and version.chunks == stored.rows[generation]
            and version.ids == stored.digest(generation)
        )
        state.adopt(
            doc_id,
            path=stored.path,
            sha256=version.sha256 if version and whole else "",
            model=settings.model_key,
            generation=generation,
            chunks=stored.rows[generation],
            ids=stored.digest(generation),
        )
        (adopted if whole else changed).append(stored.path)
        if whole and (older := [g for g in stored.rows if g != generation]):
            # (what the version stored whole replaced)
            _delete_counted(settings, state, doc_id, older)
    return adopted, changed


def recover(settings: Settings, producer: Producer) -> list[Path]:
    """At the start of a watch: a ledger that Redis lost is rebuilt from the collection and the
    folder (``adopt``: nothing that the collection holds is embedded again); a collection that
    Milvus lost, while the ledger says it held chunks, is said in one line, and the files it held
    are returned, to be ingested again."""
    state = producer.state
    if not state.has_ledger():
        docs = read_store(settings)
        if docs:
            rows = sum(sum(d.rows.values()) for d in docs.values())
            log.warning(
                "the ledger is empty but Milvus holds %d chunks of %d files: rebuilding the ledger "
                "from them and the folder (nothing stored is embedded again)",
                rows,
                len(docs),
            )
            adopted, changed = adopt(settings, producer, docs)
            log.warning(
                "ledger rebuilt: %d file(s) as stored, %d to be indexed again (their vectors reused)",
                len(adopted),
                len(changed),
            )
        return []
    indexed = [r for r in state.records() if r.status == FileStatus.INDEXED and r.chunks_total]
    if indexed and count_rows(settings) == 0:
        chunks = sum(r.chunks_total for r in indexed)
        log.warning(
            "Milvus holds none of the %d chunks of the %d indexed files: indexing them again",
            chunks,
            len(indexed),
        )
        return [Path(r.path) for r in indexed if os.path.lexists(r.path)]
    return []
