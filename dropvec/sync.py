"""Keeping a folder in sync: the service behind ``dropvec watch`` and ``dropvec up``.

The folder is reconciled once the watch is in place (nothing that happens from then on is
missed), then every settled change goes to the producer until ``stop``. A pass that fails (a
service down, or a fault of ours) is told to ``on_error`` and offered again shortly: the watch
goes on. The pipeline's metrics are served meanwhile, if a port is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from dropvec.config.errors import DropvecError
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import pipeline_registry, serve
from dropvec.producer.enqueue import IngestReport, Producer
from dropvec.producer.watch import watch_folder

log = logging.getLogger(__name__)


def keep_in_sync(
    settings: Settings,
    producer: Producer,
    stop: threading.Event,
    *,
    on_report: Callable[[IngestReport], None],
    on_error: Callable[[Exception], None],
    on_ready: Callable[[], None],
) -> None:
    """Watch ``settings.inbox`` until ``stop``; ``on_ready`` once the first reconciliation is done."""
    inbox = settings.inbox.absolute()
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
        reconciled = sync([inbox], [])
        on_ready()
        return reconciled

    watch_folder(inbox, sync, stop, settings.settle_seconds, settings.ignore, on_ready=reconcile)
