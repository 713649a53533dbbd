"""Bringing folders in line with the index: ``ingest`` (a pass, and with ``wait`` its run
followed to the end) and ``keep_in_sync``, the service behind ``dropvec watch`` and ``dropvec up``.

The folder is reconciled once the watch is in place (nothing that happens from then on is
missed), then every settled change goes to the producer until ``stop``. Before the first pass, a
ledger that Redis lost is rebuilt from the collection and the folder, and the files of a
collection that Milvus lost are ingested again (``repair.recover``); every ``check_interval`` the
index is checked against the folder, cheaply, for ``status`` and the metrics. A pass that fails (a
service down, or a fault of ours) is told to ``on_error`` and offered again shortly: the watch
goes on. The pipeline's metrics are served meanwhile, if a port is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dropvec.check import Problem, Report, check, save
from dropvec.config.errors import DropvecError
from dropvec.config.records import Outcome
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import pipeline_registry, serve
from dropvec.ledger.state import RunProgress, StateStore
from dropvec.producer.enqueue import IngestReport, Producer
from dropvec.producer.watch import watch_folder
from dropvec.repair import recover, repair
from dropvec.status import Ended, follow_run, live_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    """A pass over some paths and, if it was waited for, how its run ended."""

    report: IngestReport
    progress: RunProgress | None = None
    ended: Ended | None = None

    @property
    def stopped(self) -> bool:
        """Asked to stop before every file was read, or while waiting."""
        return bool(self.report.not_read) or self.ended == "stopped"

    @property
    def failed(self) -> bool:
        """A file failed (in the pass, or in the workers), or waiting timed out."""
        if self.progress is None:
            return bool(self.report.count(Outcome.FAILED))
        return self.ended == "timed out" or self.progress.files_failed > 0


class IngestView(Protocol):
    """What shows a pass (the terminal's ``dropvec.render`` is one)."""

    def outcomes(self, report: IngestReport) -> None: ...

    def waiting(self, live_workers: list[str]) -> AbstractContextManager[Callable[[RunProgress], None]]:
        """Shown while the run is followed; yields the function told of each progress."""
        ...


def failed_paths(settings: Settings) -> list[Path]:
    """The files whose last attempt failed."""
    return [Path(p) for p in StateStore.from_settings(settings).failed_paths()]


def ingest(
    settings: Settings,
    targets: list[Path],
    stop: threading.Event,
    *,
    force: bool,
    wait: bool,
    timeout: float,
    view: IngestView,
) -> Ingested:
    """One pass over ``targets`` (its outcomes shown by ``view``); with ``wait``, its run followed
    until every chunk is written, ``timeout`` (0: none) or ``stop``."""
    report = Producer.from_settings(settings, stop).ingest(targets, force=force)
    view.outcomes(report)
    if report.not_read or not (wait and report.count(Outcome.QUEUED)):
        return Ingested(report)
    with view.waiting(live_workers(settings)) as update:
        p, ended = follow_run(settings, report.run_id, timeout=timeout or None, stop=stop, on_progress=update)
    return Ingested(report, p, ended)


def make_inbox(inbox: Path) -> None:
    """``inbox`` made if missing; a file (or anything else) in its place is a DropvecError that
    says so in one line."""
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = (
            "it is not a folder" if inbox.exists()
            else "it is a link to nothing" if inbox.is_symlink()
            else exc.strerror or str(exc)
        )  # fmt: skip
        raise DropvecError(f"cannot use {inbox} as the inbox: {why}") from exc


def keep_in_sync(
    settings: Settings,
    stop: threading.Event,
    *,
    on_report: Callable[[IngestReport], None],
    on_error: Callable[[Exception], None],
    on_ready: Callable[[], None],
    on_reindex: Callable[[IngestReport], None] | None = None,
) -> None:
    """Watch ``settings.inbox`` (made if missing) until ``stop``; ``on_ready`` once the first
    reconciliation is done; ``on_reindex`` with the pass that ingests again the files of a
    collection Milvus lost (it may follow the run)."""
    producer = Producer.from_settings(settings, stop)
    inbox = settings.inbox.absolute()
    make_inbox(inbox)
    serve(settings, pipeline_registry(settings), "pipeline")

    def sync(paths: list[Path], deleted: list[Path]) -> bool:
        try:
            on_report(producer.ingest(paths, deleted=deleted))
        except Exception as exc:
            if not isinstance(exc, DropvecError):  # (a fault of ours: its traceback, at debug)
                log.debug(
                    "unexpected error in a pass over %d path(s)", len(paths) + len(deleted), exc_info=True
                )
            on_error(exc)
            return False
        return True

    def reconcile() -> bool:
        try:
            lost = recover(settings, producer)
            if lost:
                report = producer.ingest(lost, force=True)
                on_report(report)
                if on_reindex is not None:
                    on_reindex(report)
        except DropvecError as exc:
            on_error(exc)  # (the pass below meets the same outage, and is offered again)
        reconciled = sync([inbox], [])
        on_ready()
        return reconciled

    checking = threading.Thread(target=_check_every, args=(settings, stop), name="check", daemon=True)
    checking.start()
    try:
        watch_folder(inbox, sync, stop, settings.settle_seconds, settings.ignore, on_ready=reconcile)
    finally:
        checking.join(timeout=5)


def _check_every(settings: Settings, stop: threading.Event) -> None:
    """The cheap check every ``check_interval`` seconds until ``stop``. A finding counts once two
    checks in a row make it (a file renamed a moment ago is "gone" and "unindexed" until the
    watcher's pass): those are kept for ``status`` and the metrics, and logged when they change;
    with ``check_repair``, they are repaired (``_heal``)."""
    if not settings.check_interval:
        return
    before: set[tuple[str, str]] | None = None
    told: dict[str, int] = {}
    while not stop.wait(settings.check_interval):
        try:
            report = check(settings, settings.inbox, full=False, save=False)
            now = _found(report)
            report.problems = [p for p in report.problems if before is not None and _key(p) in before]
            before = now
            if not report.problems and now:
                continue  # (new findings: the next check says whether they last)
            save(settings, report)
            counts = {f: n for f, n in report.counts().items() if n}
            if counts and counts != told:
                found = ", ".join(f"{n} {f}" for f, n in counts.items())
                log.warning("the index does not match the folder: %s (dropvec check --repair)", found)
            told = counts
            if report.problems and settings.check_repair:
                _heal(settings, stop)
                before, told = None, {}
        except DropvecError as exc:
            log.debug("no check: %s", exc)
        except Exception as exc:  # a fault of ours must not end the checks: told, and tried again
            log.warning("the periodic check failed: %s: %s", type(exc).__name__, exc)
            log.debug("the periodic check failed", exc_info=True)


def _after(report: Report | None) -> str:
    """The check after a repair, in a few words (made while the folder may be changing)."""
    if report is None or report.clean:
        return "the check after it is clean"
    found = ", ".join(f"{n} {f}" for f, n in report.counts().items() if n)
    return f"the check after it finds {found} (if they last, the next checks repair them)"


def _key(p: Problem) -> tuple[str, str]:
    return (str(p.finding), p.path)


def _found(report: Report) -> set[tuple[str, str]]:
    return {_key(p) for p in report.problems}


def _heal(settings: Settings, stop: threading.Event) -> None:
    """The full check, twice a few seconds apart; what both find is repaired. (A message can be
    lost: kombu's Redis transport pops a task from the queue before it records it as taken, and
    a worker killed in between loses it; the soak met a removal lost so.)"""
    first = check(settings, settings.inbox)
    if first.clean or stop.wait(max(5.0, 4 * settings.settle_seconds)):
        return
    second = check(settings, settings.inbox, save=False)
    lasting = _found(first) & _found(second)
    second.problems = [p for p in second.problems if _key(p) in lasting]
    if not second.problems:
        return
    found = ", ".join(f"{n} {f}" for f, n in second.counts().items() if n)
    log.warning("repairing what two full checks found: %s", found)
    done = repair(settings, second, stop, folder=settings.inbox)
    log.warning(
        "repaired: %d file(s) indexed again (%d chunk(s) embedded, %d reused), %d removed, %d orphan "
        "row(s) deleted; %s", done.requeued, done.embedded, done.reused, done.removed, done.rows_deleted,
        _after(done.after),
    )  # fmt: skip
