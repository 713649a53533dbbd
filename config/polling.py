"""Waiting: one polling helper for every wait with a deadline, and the signal handling that lets
the first SIGINT or SIGTERM end any of those waits.

Core: imports nothing of dropvec's.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def poll(
    check: Callable[[], T],
    *,
    timeout: float | None = None,
    interval: float = 0.2,
    stop: threading.Event | None = None,
) -> T | None:
    """Call ``check`` until it returns something truthy, and return that; None once ``timeout``
    seconds have passed (None: no deadline) or ``stop`` is set."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if stop is not None:
            if stop.wait(interval):
                return None
        else:
            time.sleep(interval)


@contextmanager
def stopping_on_signals(stop: threading.Event, *, at_once: bool = False) -> Iterator[None]:
    """While inside: the first SIGINT or SIGTERM sets ``stop`` (the work in hand is finished, or
    a wait given up), a second one raises KeyboardInterrupt. ``at_once``: the first one raises
    (for start-up, where there is nothing to finish). The previous handlers come back after."""

    def handler(signum: int, frame: Any) -> None:
        if at_once or stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
