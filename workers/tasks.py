"""Thin Celery tasks: decode the message, hand it to the runtime, set the retry policy."""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.signals import task_retry, worker_ready
from celery.utils.nodenames import default_nodename, host_format
from pydantic import ValidationError

from dropvec.config.errors import RedisUnavailable, ServiceUnavailable
from dropvec.config.messages import (
    EMBED_FILES_TASK,
    EMBED_TASK,
    REMOVE_TASK,
    EmbedTask,
    FilesTask,
    RemoveTask,
)
from dropvec.config.settings import Settings
from dropvec.workers.app import create_app, publishing, run_worker, send_removal
from dropvec.workers.runtime import get_runtime

log = logging.getLogger(__name__)

#: Failures of a service rather than of the input (each adapter raises them, and only them):
#: waited out (``wait_out``).
TRANSIENT_ERRORS = (ServiceUnavailable,)


class EmbedTaskBase(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The task has given up: its file (each of its files) is failed, with the reason."""
        runtime = get_runtime(self.app.dropvec_settings)
        try:
            parts = _parts(args[0])
        except (ValidationError, IndexError):
            log.error("task %s failed with an undecodable message: %s", task_id, exc)
            runtime.metrics.tasks.labels("failed").inc()
            runtime.state.counters.count({"task_failures": 1})
            return
        for removal in runtime.give_up(parts, f"{type(exc).__name__}: {exc}".splitlines()[0][:500]):
            send_removal(self.app, removal)


def _parts(message: dict[str, Any]) -> list[EmbedTask]:
    """The file tasks a message holds (one, or the parts of a ``FilesTask``)."""
    if "parts" in message:
        return list(FilesTask.model_validate(message).parts)
    return [EmbedTask.model_validate(message)]


#: The longest wait between two tries of a task whose service is down (at most half the lease).
RETRY_BACKOFF_MAX_SECONDS = 60


def wait_out(task: Task, exc: ServiceUnavailable, since: float, *, forever: bool = False) -> NoReturn:
    """Retry ``task`` after a service error: exponential backoff with jitter, for as long as
    DROPVEC_OUTAGE_SECONDS from the first failure (``since``; ``forever``: however long), then
    give up with ``exc``. A try is never put off past half the lease: a retry waiting its turn in
    a worker is an unacknowledged message, which the broker would hand out again after the lease."""
    settings = task.app.dropvec_settings
    since = since or time.time()
    if not forever and time.time() - since > settings.outage_seconds:
        raise exc
    cap = min(RETRY_BACKOFF_MAX_SECONDS, settings.task_lease_seconds / 2)
    backoff = min(cap, 2.0 ** (task.request.retries + 1))
    kwargs = {**(task.request.kwargs or {}), "outage_since": since}
    # (the tasks have max_retries=None: no count of tries limits them, the outage's length does)
    raise task.retry(exc=exc, countdown=random.uniform(backoff / 2, backoff), kwargs=kwargs)


def ran_before(task: Task) -> bool:
    """Whether some of the task's chunks may be stored already: it is a retry, the broker handed it
    out again (a worker lost, a lease run out), or it is a part of a pack that failed. Only then
    are its chunk ids looked up before they are written (``ChunkWriter.write``)."""
    request = task.request
    redelivered = (request.delivery_info or {}).get("redelivered")
    return bool(request.retries or redelivered or (request.kwargs or {}).get("again"))


@shared_task(name=EMBED_TASK, base=EmbedTaskBase, bind=True, acks_late=True, max_retries=None)
def embed_chunks(self: Task, message: dict[str, Any], outage_since: float = 0.0, again: bool = False) -> int:
    task = EmbedTask.model_validate(message)
    try:
        return get_runtime(self.app.dropvec_settings).process(task, again=ran_before(self))
    except TRANSIENT_ERRORS as exc:
        wait_out(self, exc, outage_since)


@shared_task(name=EMBED_FILES_TASK, base=EmbedTaskBase, bind=True, acks_late=True, max_retries=None)
def embed_files(self: Task, message: dict[str, Any], outage_since: float = 0.0) -> int:
    """The tasks of several small files, embedded as one batch (``WorkerRuntime.process_pack``)."""

    def requeue(parts: Sequence[EmbedTask]) -> None:
        with publishing(self.app) as send:
            for part in parts:  # (some of its chunks may have been written)
                send(EMBED_TASK, part.model_dump(mode="json"), again=True)

    pack = FilesTask.model_validate(message)
    try:
        return get_runtime(self.app.dropvec_settings).process_pack(
            pack.parts, requeue, again=ran_before(self)
        )
    except TRANSIENT_ERRORS as exc:
        wait_out(self, exc, outage_since)


# A removal is retried for as long as it takes: stale chunks must not outlive an outage.
@shared_task(name=REMOVE_TASK, bind=True, acks_late=True, max_retries=None)
def remove_chunks(self: Task, message: dict[str, Any], outage_since: float = 0.0) -> int:
    task = RemoveTask.model_validate(message)
    try:
        return get_runtime(self.app.dropvec_settings).remove(task)
    except TRANSIENT_ERRORS as exc:
        wait_out(self, exc, outage_since, forever=True)


@task_retry.connect
def count_retry(sender: Task, **_: Any) -> None:
    """A task retried after a service error: counted in the worker and in the totals (unless the
    service that failed is Redis itself)."""
    runtime = get_runtime(sender.app.dropvec_settings)
    runtime.metrics.tasks.labels("retried").inc()
    try:
        runtime.state.counters.count({"task_retries": 1})
    except RedisUnavailable as exc:
        log.debug("retry not counted: %s", exc)


#: A worker's heartbeat in the ledger is renewed this often, and lasts three times as long.
HEARTBEAT_SECONDS = 5


def run(settings: Settings, name: str = "") -> int:
    """A worker process: the model loaded and the store opened before any task is taken, its
    metrics served, a heartbeat in the ledger (what ``status`` counts as live), then the Celery
    worker until asked to stop; the exit code."""
    from dropvec.ledger.metrics import serve

    runtime = get_runtime(settings)
    serve(settings, runtime.metrics.registry, "worker")
    node = host_format(default_nodename(f"{name}@%h" if name else None))
    stop = threading.Event()
    beating = threading.Thread(target=_beat, args=(runtime.state, node, stop), name="heartbeat", daemon=True)

    def consuming(**_: Any) -> None:  # the heartbeat starts once the worker takes tasks
        if not beating.is_alive():
            beating.start()
        # what start-up made (the model, the libraries: some 240,000 objects) lives as long as
        # the worker: Python's full collections no longer walk it, each of which took 115-130 ms
        # mid-task, a few times a minute while a worker embeds
        gc.freeze()

    worker_ready.connect(consuming, weak=False)
    try:
        return run_worker(
            create_app(settings),
            hostname=node,
            loglevel=settings.log_level,
            quiet=settings.log_format == "json",
        )
    finally:
        stop.set()
        with contextlib.suppress(RedisUnavailable):
            runtime.state.worker_gone(node)


def _beat(state: Any, node: str, stop: threading.Event) -> None:
    while True:
        try:
            state.worker_beat(node, 3 * HEARTBEAT_SECONDS)
        except RedisUnavailable as exc:  # Redis down: the worker rides it out, and so does this
            log.debug("heartbeat not written: %s", exc)
        if stop.wait(HEARTBEAT_SECONDS):
            return
