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
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, watch

from dropvec.config.settings import DEFAULT_IGNORE
from dropvec.producer.files import Signature, expand, is_ignored, link_on_path, open_for_writing, signature

log = logging.getLogger(__name__)

#: Longest a deletion waits for other files to settle before it is passed on alone.
MAX_DELETE_HOLD_SECONDS = 10.0
#: A batch the producer could not take (Redis down, say) is offered again this much later.
RETRY_SECONDS = 5.0
#: How often a watched folder that is gone is looked for (and a failed watch set up again).
FOLDER_POLL_SECONDS = 1.0


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

    The watch outlives what the file system reports: when watchfiles fails (a name it cannot
    decode ends its iterator, with every event of that moment), or the folder is removed or
    replaced, the watch is set up again once the folder is there, and the whole folder is offered
    (a reconciliation finds what the lost events were about). A symbolic link is offered as it is,
    never walked, and events behind one are dropped.
    """
    pending: dict[Path, tuple[Signature | None, float]] = {}
    deleted: dict[Path, float] = {}
    lost = False  # whether events may have been lost since the last watch was in place
    while not stop.is_set():
        identity = _identity(folder)
        if identity is None:  # removed: what was in it is gone; watched again once it is made again
            _pass_on(folder, pending, deleted, on_change, stop, settle_seconds)
            stop.wait(FOLDER_POLL_SECONDS)
            continue
        try:
            for changes in watch(
                folder, stop_event=stop, yield_on_timeout=True, rust_timeout=100, step=50, debounce=1600
            ):
                if on_ready is not None and not on_ready():
                    pending[folder] = (signature(folder), time.monotonic() + RETRY_SECONDS)  # reconcile later
                on_ready = None
                if lost:  # the new watch is in place: now the folder is offered whole
                    pending[folder], lost = (None, time.monotonic()), False
                _take(folder, changes, pending, deleted, ignore)
                _pass_on(folder, pending, deleted, on_change, stop, settle_seconds)
                if _identity(folder) != identity:
                    log.warning("%s was removed or replaced: watching it again once it is there", folder)
                    break
        except (RuntimeError, OSError) as exc:  # watchfiles' own error is a RuntimeError
            log.warning("the watch on %s failed (%s): watching it again, then reconciling it", folder, exc)
            stop.wait(FOLDER_POLL_SECONDS)
        lost = on_ready is None


def _identity(folder: Path) -> tuple[int, int] | None:
    """The folder's device and inode (a folder made again is another one); None if it is gone."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _take(
    folder: Path,
    changes: set[tuple[Change, str]],
    pending: dict[Path, tuple[Signature | None, float]],
    deleted: dict[Path, float],
    ignore: Sequence[str],
) -> None:
    """File events into ``pending`` (to settle) and ``deleted``."""
    now = time.monotonic()
    for change, raw in changes:
        path = Path(raw)
        if not path.is_relative_to(folder) or path == folder and change != Change.deleted:
            continue
        parts = path.relative_to(folder).parts
        if any(is_ignored(Path(part), ignore) for part in parts):
            continue
        link = link_on_path(path.parent, folder) if path != folder else None
        if link is not None:
            log.debug("dropped an event behind the symbolic link %s: %s", link, path)
            continue
        if change == Change.deleted:
            pending.pop(path, None)
            deleted[path] = now
            continue
        deleted.pop(path, None)
        # a folder (moved in, say) is not read as a whole: each file in it settles alone; a link
        # is offered as it is, for the producer to skip
        for file in expand([path], ignore) if path.is_dir() and not path.is_symlink() else [path]:
            pending[file] = (signature(file), now)


def _pass_on(
    folder: Path,
    pending: dict[Path, tuple[Signature | None, float]],
    deleted: dict[Path, float],
    on_change: Callable[[list[Path], list[Path]], bool],
    stop: threading.Event,
    settle_seconds: float,
) -> None:
    """Offer what has settled, and what is gone, to ``on_change``; keep what it could not take."""
    now = time.monotonic()
    ready = _settled(pending, now, settle_seconds)
    oldest = min(deleted.values(), default=now)
    if deleted and (not pending or now - oldest > MAX_DELETE_HOLD_SECONDS):
        gone = [p for p in deleted if not os.path.lexists(p)]
        deleted.clear()
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
