"""Thin Celery tasks: decode the message, hand it to the runtime, set the retry policy."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery import Task, shared_task
from celery.signals import task_retry, worker_ready
from celery.utils.nodenames import default_nodename, host_format
from pydantic import ValidationError

from dropvec.config.errors import RedisUnavailable, ServiceUnavailable
from dropvec.config.messages import EMBED_TASK, REMOVE_TASK, EmbedTask, RemoveTask
from dropvec.config.records import retired
from dropvec.config.settings import Settings
from dropvec.workers.app import create_app, run_worker, send_removal
from dropvec.workers.runtime import get_runtime

log = logging.getLogger(__name__)

#: Failures of a service rather than of the input (each adapter raises them, and only them):
#: retried with exponential backoff and jitter.
TRANSIENT_ERRORS = (ServiceUnavailable,)


class EmbedTaskBase(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The task has given up: its file is failed, with the reason, and none of it stays searchable
        (neither the part of this version already written nor the versions it was to replace)."""
        runtime = get_runtime(self.app.dropvec_settings)
        runtime.metrics.tasks.labels("failed").inc()
        state = runtime.state
        try:
            message = EmbedTask.model_validate(args[0])
        except (ValidationError, IndexError):
            log.error("task %s failed with an undecodable message: %s", task_id, exc)
            state.counters.count({"task_failures": 1})
            return
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        failed = state.task_failed(
            message.run_id, message.doc_id, message.generation, message.file_path, reason
        )
        state.counters.count(
            {"task_failures": 1, "chunks:failed": len(message.chunks), "files:failed": int(failed)}
        )
        if failed:
            targets = retired(message.doc_id, state.replaced_by(message.doc_id), failed_at=message.generation)
            for target in targets:
                send_removal(self.app, target.task(message.file_path))


#: How a task is retried after a transient error: exponential backoff, with jitter, up to a minute.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@shared_task(name=EMBED_TASK, base=EmbedTaskBase, bind=True, acks_late=True, max_retries=8, **RETRY_POLICY)
def embed_chunks(self: Task, message: dict[str, Any]) -> int:
    task = EmbedTask.model_validate(message)
    return get_runtime(self.app.dropvec_settings).process(task)


# A removal is retried for as long as it takes: stale chunks must not outlive an outage.
@shared_task(name=REMOVE_TASK, bind=True, acks_late=True, max_retries=None, **RETRY_POLICY)
def remove_chunks(self: Task, message: dict[str, Any]) -> int:
    task = RemoveTask.model_validate(message)
    return get_runtime(self.app.dropvec_settings).remove(task)


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
