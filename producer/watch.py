"""Watching the inbox: file events in, settled paths out to the producer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, watch

from producer.enqueue import is_ignored

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def watch_folder(
    folder: Path,
    on_settled: Callable[[list[Path]], None],
    stop: threading.Event,
    settle_seconds: float = 1.0,
) -> None:
    """Call ``on_settled`` with files added or changed under ``folder`` once they stop changing.

    A file counts as settled when its size and modification time have not moved for
    ``settle_seconds``; a copy in progress is therefore read once, whole.
    """
    pending: dict[Path, tuple[tuple[int, int] | None, float]] = {}
    for changes in watch(
        folder, stop_event=stop, yield_on_timeout=True, rust_timeout=200, step=50, debounce=400
    ):
        now = time.monotonic()
        for change, raw in changes:
            path = Path(raw)
            if change == Change.deleted or is_ignored(path):
                pending.pop(path, None)
                continue
            pending[path] = (_signature(path), now)
        ready = []
        for path, (sig, since) in list(pending.items()):
            current = _signature(path)
            if current is None:
                del pending[path]
            elif current != sig:
                pending[path] = (current, now)
            elif now - since >= settle_seconds:
                del pending[path]
                if path.is_file():
                    ready.append(path)
        if ready:
            log.info("settled: %s", ", ".join(p.name for p in ready))
            on_settled(sorted(ready))
