"""Does the index match the folder? The folder, the ledger and the collection compared file by
file (``check``; ``dropvec.repair`` brings them in line).

What ``check`` finds (``Finding``), per file:

    missing    chunks of the file's current version that the collection lacks
    extra      rows of the current version that are not its chunks (other ids, an id stored twice)
    orphans    rows of no current file version: older versions, files skipped or failed, doc ids
               the ledger does not know
    stuck      a version queued or indexing that no task in the queue (or held by a worker) is for
    gone       a ledger entry for a file of the folder that is no longer on disk
    unindexed  a file in the folder without a ledger entry
    changed    a file of the folder whose content (or model) is not the one indexed (hashed:
               ``full`` only)

Files of the ledger outside the folder (another folder, another host's) are compared with the
collection, not with a disk that may not be theirs.

Work on its way is not a finding: rows of a version being replaced, or that a removal task in the
queue will remove, nor a file whose tasks are queued. The collection is streamed, and what is kept
of it is a count and a digest of the ids per file version, whatever the number of rows.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence, Set
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from dropvec.config.bm25 import TermCounts, counted
from dropvec.config.ids import doc_id_for, ids_digest
from dropvec.config.records import LIVE, FileRecord, FileStatus
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore, TasksAlive
from dropvec.producer.files import expand, file_sha256, has_utf8_name
from dropvec.workers.store import (
    DOC_ID,
    EMBED_HASH,
    FILE_PATH,
    GENERATION,
    ID,
    ROW_FIELDS,
    TEXT,
    count_rows,
    iter_rows,
)

log = logging.getLogger(__name__)

#: A version queued or indexing with no task alive counts as stuck once no task of it was counted
#: for this long (a producer waiting for room in a full queue between two of a file's tasks, a
#: task between the queue and a worker, are not stuck).
STUCK_SECONDS = 300.0


class Finding(str, Enum):
    MISSING = "missing"
    EXTRA = "extra"
    ORPHANS = "orphans"
    STUCK = "stuck"
    GONE = "gone"
    UNINDEXED = "unindexed"
    CHANGED = "changed"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Problem:
    """One finding about one file (``path``; "" for the collection as a whole)."""

    finding: Finding
    path: str
    detail: str
    doc_id: str = ""
    #: For orphans: the versions whose rows are to go.
    generations: tuple[int, ...] = ()
    rows: int = 0
    #: For orphans: rows of a doc id the ledger has no record of.
    unknown: bool = False


@dataclass
class StoredDoc:
    """What the collection holds of one doc id: rows and id digest per generation."""

    path: str = ""
    rows: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    sums: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def digest(self, generation: int) -> str:
        return f"{self.sums.get(generation, 0) % 2**128:032x}"


@dataclass
class Report:
    """A check's findings, and what it compared."""

    problems: list[Problem]
    files: int = 0
    records: int = 0
    rows: int = 0
    full: bool = True
    at: float = field(default_factory=time.time)

    @property
    def clean(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        return {str(f): sum(1 for p in self.problems if p.finding == f) for f in Finding}

    def summary(self) -> dict[str, Any]:
        """What is kept of the check in the ledger (``status``, the metrics)."""
        return {
            "at": self.at,
            "full": self.full,
            "clean": self.clean,
            "findings": self.counts(),
            "files": self.files,
            "records": self.records,
            "rows": self.rows,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "problems": [{**asdict(p), "finding": str(p.finding)} for p in self.problems],
        }


def read_store(
    settings: Settings,
    on_page: Callable[[list[dict[str, Any]]], None] | None = None,
    fields: Sequence[str] = (),
) -> dict[str, StoredDoc]:
    """The collection, streamed: per doc id, its rows and id digest by generation; ``on_page``
    sees each page of rows, with ``fields`` besides those read for this."""
    docs: dict[str, StoredDoc] = defaultdict(StoredDoc)
    for page in iter_rows(settings, [*ROW_FIELDS, *fields]):
        for row in page:
            doc, generation = docs[str(row[DOC_ID])], int(row.get(GENERATION) or 0)
            doc.path = doc.path or str(row.get(FILE_PATH) or "")
            doc.rows[generation] += 1
            doc.sums[generation] += int(ids_digest([str(row[ID])]), 16)
        if on_page is not None:
            on_page(page)
    return dict(docs)


def check(
    settings: Settings,
    folder: Path | None = None,
    *,
    full: bool = True,
    rebuild_hashes: bool = False,
    save: bool = True,
) -> Report:
    """Compare ``folder`` (default: the inbox), the ledger and the collection. ``full``: read every
    row and hash every file (else: files by name only, and the collection by its row count, when
    no work is on its way); ``rebuild_hashes``: the set of stored embed hashes and BM25's
    statistics made afresh from the rows read (their texts read too); ``save``: kept as the last
    check (``status``, the metrics). Raises ServiceUnavailable if Redis or Milvus is down."""
    state = StateStore.from_settings(settings)
    state.ping()
    folder = (folder or settings.inbox).absolute()
    records = {r.path: r for r in state.records()}
    on_disk = [p for p in expand([folder], settings.ignore) if has_utf8_name(p)] if folder.is_dir() else []
    problems = [
        Problem(Finding.UNINDEXED, str(p), "in the folder, not in the ledger")
        for p in on_disk
        if str(p) not in records
    ]
    alive = state.tasks_alive()
    gone = {path for path in records if _under(path, folder) and not os.path.lexists(path)}
    for path, r in records.items():
        if path in gone:
            problems.append(Problem(Finding.GONE, path, "no longer on disk", doc_id_for(path)))
        elif _stuck(r, alive):
            problems.append(Problem(Finding.STUCK, path, f"{r.status} with no task alive", doc_id_for(path)))
        elif full and r.status == FileStatus.INDEXED and _under(path, folder) and _is_file(path):
            if r.model != settings.model_key:
                problems.append(Problem(Finding.CHANGED, path, f"indexed with {r.model}", doc_id_for(path)))
            elif _sha(Path(path)) != r.sha256:
                problems.append(
                    Problem(Finding.CHANGED, path, "changed since it was indexed", doc_id_for(path))
                )
    problems = _confirm_stuck(state, problems)
    report = Report(problems, files=len(on_disk), records=len(records), full=full)
    if full:
        if rebuild_hashes:
            hashes, terms = state.hashes.rebuild(settings.collection), TermCounts()

            def rebuild(page: list[dict[str, Any]]) -> None:
                hashes.add(r[EMBED_HASH] for r in page)
                terms.merge(counted(r.get(TEXT) or "" for r in page))

            docs = read_store(settings, rebuild, fields=[TEXT])
            hashes.commit()
            # (rows that workers write or remove meanwhile may be counted twice or not at all)
            state.terms.replace(settings.collection, terms)
        else:
            docs = read_store(settings)
        report.rows = sum(sum(d.rows.values()) for d in docs.values())
        # the ledger and the queue read again: a file whose version moved on while the rows were
        # streamed (a new version written, a new file started) is in motion, for the next check
        after = {r.path: r for r in state.records()}
        alive = alive.merged(state.tasks_alive())
        moving = {
            doc_id_for(path)
            for path in records.keys() | after.keys()
            if _version(records.get(path)) != _version(after.get(path))
        }
        busy = bool(alive.versions or alive.removals) or any(
            r.status in (FileStatus.QUEUED, FileStatus.INDEXING) for r in after.values()
        )
        # (ids stored twice are looked for file by file, once no work is on its way: Milvus
        # counts both copies of an id, streaming returns one)
        recount = settings if not busy and count_rows(settings) > report.rows else None
        problems += compare(records, docs, alive, gone, recount, moving)
    else:
        report.rows = count_rows(settings)
        problems += _count_mismatch(records, alive, report.rows)
    if save:
        state.save_check(report.summary())
    return report


def save(settings: Settings, report: Report) -> None:
    """``report`` kept as the last check."""
    StateStore.from_settings(settings).save_check(report.summary())


def _under(path: str, folder: Path) -> bool:
    return path == str(folder) or path.startswith(f"{folder}/")


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


def _sha(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return ""


def _version(r: FileRecord | None) -> tuple[int, str] | None:
    return (r.generation, str(r.status)) if r is not None else None


def _stuck(r: FileRecord, alive: TasksAlive) -> bool:
    touched = r.updated_at or r.queued_at or 0
    return (
        r.status in (FileStatus.QUEUED, FileStatus.INDEXING)
        and (doc_id_for(r.path), r.generation) not in alive.versions
        and time.time() - touched > STUCK_SECONDS
    )


def _confirm_stuck(state: StateStore, problems: list[Problem]) -> list[Problem]:
    """Stuck files looked at again (a task may have ended between reading the ledger and the queue)."""
    stuck = [p for p in problems if p.finding == Finding.STUCK]
    if not stuck:
        return problems
    alive = state.tasks_alive()
    still = {p.path for p in stuck if (r := state.record(p.doc_id)) is not None and _stuck(r, alive)}
    return [p for p in problems if p.finding != Finding.STUCK or p.path in still]


def compare(
    records: dict[str, FileRecord],
    docs: dict[str, StoredDoc],
    alive: TasksAlive,
    gone: set[str],
    recount: Settings | None,
    moving: Set[str] = frozenset(),
) -> list[Problem]:
    """Each file version against its rows (files ``gone`` are found already); ``recount``: some
    ids are stored twice, count each file's rows again to find whose. Files outside the folder
    are compared too: the ledger and the collection may hold files of other folders and hosts.
    Files in ``moving`` (their version changed while the rows were read) are left alone."""
    problems: list[Problem] = []
    known = {doc_id_for(path): r for path, r in records.items() if doc_id_for(path) not in moving}
    replaced = {  # (what a version on its way replaces, once it is done)
        x.doc_id: x.below_generation
        for r in records.values()
        if r.status in (FileStatus.QUEUED, FileStatus.INDEXING)
        for x in r.replaces
    }
    for doc_id, r in known.items():
        stored = docs.get(doc_id, StoredDoc())
        pending = max(alive.removals.get(doc_id, 0), replaced.get(doc_id, 0))
        keep = {r.generation} if r.status in LIVE else set()
        if r.status == FileStatus.INDEXED and r.path not in gone:
            have = stored.rows.get(r.generation, 0)
            twice = count_rows(recount, doc_id) - sum(stored.rows.values()) if recount and have else 0
            if have < r.chunks_total:
                problems.append(
                    Problem(
                        Finding.MISSING,
                        r.path,
                        f"{r.chunks_total - have} of its {r.chunks_total} chunks are not stored",
                        doc_id,
                        rows=r.chunks_total - have,
                    )
                )
            elif have > r.chunks_total or twice > 0 or (r.ids and stored.digest(r.generation) != r.ids):
                extra = max(have - r.chunks_total, twice)
                problems.append(
                    Problem(
                        Finding.EXTRA,
                        r.path,
                        f"{extra or 'some'} of its rows are not its chunks, or are stored twice",
                        doc_id,
                        rows=extra,
                    )
                )
        if r.status in (FileStatus.QUEUED, FileStatus.INDEXING):
            keep |= {g for g in stored.rows if g < r.generation}  # (replaced once it is done)
        orphans = tuple(sorted(g for g in stored.rows if g not in keep and g >= pending))
        if orphans:
            rows = sum(stored.rows[g] for g in orphans)
            problems.append(
                Problem(
                    Finding.ORPHANS,
                    r.path,
                    f"{rows} row(s) of no current version of it",
                    doc_id,
                    orphans,
                    rows,
                )
            )
    for doc_id, stored in docs.items():
        if (
            doc_id not in known
            and doc_id not in moving
            and doc_id not in alive.removals
            and doc_id not in replaced
        ):
            rows = sum(stored.rows.values())
            problems.append(
                Problem(
                    Finding.ORPHANS,
                    stored.path,
                    f"{rows} row(s) of a file the ledger does not know",
                    doc_id,
                    tuple(sorted(stored.rows)),
                    rows,
                    unknown=True,
                )
            )
    return problems


def _count_mismatch(records: dict[str, FileRecord], alive: TasksAlive, rows: int) -> list[Problem]:
    """The cheap check of the collection: its row count against the ledger's, once no work is on
    its way (rows come and go while it is)."""
    if (
        alive.versions
        or alive.removals
        or any(r.status in (FileStatus.QUEUED, FileStatus.INDEXING) for r in records.values())
    ):
        return []
    listed = sum(r.chunks_total for r in records.values() if r.status == FileStatus.INDEXED)
    if rows == listed:
        return []
    finding = Finding.MISSING if rows < listed else Finding.EXTRA
    return [
        Problem(
            finding,
            "",
            f"the collection holds {rows} rows, the ledger lists {listed}: run `dropvec check`",
            rows=abs(rows - listed),
        )
    ]
