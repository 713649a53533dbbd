"""Watching the inbox: file events in, settled and deleted paths out to the producer.

A file is settled once its size and modification time have not moved for ``settle_seconds`` and
no process on this host holds it open for writing (Linux; elsewhere the quiet time alone decides).
A copy in progress, or a file written in parts by a program that keeps it open, is therefore read
once, whole. Deletions are held back while other files are still settling, so that a rename
(the old name deleted, the new one added) reaches the producer as one batch and can be
recognised as a move.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, watch

from config.settings import DEFAULT_IGNORE
from producer.files import Signature, expand, is_ignored, open_for_writing, signature

log = logging.getLogger(__name__)

#: Longest a deletion waits for other files to settle before it is passed on alone.
MAX_DELETE_HOLD_SECONDS = 10.0
#: A batch the producer could not take (Redis down, say) is offered again this much later.
RETRY_SECONDS = 5.0


def watch_folder(
    folder: Path,
    on_change: Callable[[list[Path], list[Path]], bool],
    stop: threading.Event,
    settle_seconds: float = 0.5,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    on_ready: Callable[[], bool] | None = None,
) -> None:
    """Call ``on_change(settled, deleted)`` for paths under ``folder`` (recursively) until ``stop``.

    ``settled`` are files added or changed (or in a folder moved in), ready to read; ``deleted`` are
    paths gone (a deleted folder is one path). ``on_change`` returns False if it could not take
    them (a service is down): they are offered again ``RETRY_SECONDS`` later. ``on_ready`` is
    called once the watch is in place (the place to reconcile the folder: nothing that happens
    from then on is missed); if it returns False, the whole folder is offered again later.
    """
    pending: dict[Path, tuple[Signature | None, float]] = {}
    deleted: dict[Path, float] = {}
    for changes in watch(
        folder, stop_event=stop, yield_on_timeout=True, rust_timeout=100, step=50, debounce=1600
    ):
        if on_ready is not None and not on_ready():
            pending[folder] = (signature(folder), time.monotonic() + RETRY_SECONDS)  # reconcile later
        on_ready = None
        now = time.monotonic()
        for change, raw in changes:
            path = Path(raw)
            if any(is_ignored(Path(part), ignore) for part in path.relative_to(folder).parts):
                continue
            if change == Change.deleted:
                pending.pop(path, None)
                deleted[path] = now
            else:
                deleted.pop(path, None)
                # a folder (moved in, say) is not read as a whole: each file in it settles alone
                for file in expand([path], ignore) if path.is_dir() else [path]:
                    pending[file] = (signature(file), now)
        ready = _settled(pending, now, settle_seconds)
        oldest = min(deleted.values(), default=now)
        if deleted and (not pending or now - oldest > MAX_DELETE_HOLD_SECONDS):
            gone, deleted = [p for p in deleted if not p.exists()], {}
        else:
            gone = []
        if (ready or gone) and not stop.is_set():
            log.info("settled: %s; deleted: %s", [p.name for p in ready], [p.name for p in gone])
            if not on_change(sorted(ready), sorted(gone)):
                later = time.monotonic() + RETRY_SECONDS
                pending.update((p, (signature(p), later)) for p in ready if p not in pending)
                deleted.update((p, later) for p in gone if p not in deleted)


def _settled(pending: dict[Path, tuple[Signature | None, float]], now: float, quiet: float) -> list[Path]:
    """Take out of ``pending`` the paths that are settled; restart the clock of those that moved."""
    quiet_enough = []
    for path, (sig, since) in list(pending.items()):
        current = signature(path)
        if current is None:
            del pending[path]
        elif current != sig:
            pending[path] = (current, now)
        elif now - since >= quiet:
            quiet_enough.append(path)
    busy = open_for_writing({p for p in quiet_enough if p.is_file()})
    ready = [p for p in quiet_enough if p not in busy]
    for path in ready:
        del pending[path]
    return ready
