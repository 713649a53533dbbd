"""Thin Celery tasks: decode the message, hand it to the runtime, set the retry policy."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import redis
from celery import Task
from celery.signals import task_retry
from pydantic import ValidationError
from pymilvus.exceptions import MilvusException

from config.messages import EMBED_TASK, REMOVE_TASK, EmbedTask, RemoveTask
from dropvec.state import Replaced
from workers.app import app, send_removal
from workers.runtime import get_runtime

log = logging.getLogger(__name__)

#: Failures of a service rather than of the input: retried with exponential backoff and jitter.
TRANSIENT_ERRORS = (
    MilvusException,
    grpc.RpcError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)


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
            state.count({"task_failures": 1})
            return
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        failed = state.task_failed(
            message.run_id, message.doc_id, message.generation, message.file_path, reason
        )
        state.count({"task_failures": 1, "chunks:failed": len(message.chunks), "files:failed": int(failed)})
        if failed:
            others = [r for r in state.replaced_by(message.doc_id) if r.doc_id != message.doc_id]
            targets = [Replaced(message.doc_id, message.generation + 1), *others]
            for target in targets:
                send_removal(self.app, target.task(message.file_path))


#: How a task is retried after a transient error: exponential backoff, with jitter, up to a minute.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@app.task(name=EMBED_TASK, base=EmbedTaskBase, bind=True, acks_late=True, max_retries=8, **RETRY_POLICY)
def embed_chunks(self: Task, message: dict[str, Any]) -> int:
    task = EmbedTask.model_validate(message)
    return get_runtime(self.app.dropvec_settings).process(task)


# A removal is retried for as long as it takes: stale chunks must not outlive an outage.
@app.task(name=REMOVE_TASK, bind=True, acks_late=True, max_retries=None, **RETRY_POLICY)
def remove_chunks(self: Task, message: dict[str, Any]) -> int:
    task = RemoveTask.model_validate(message)
    return get_runtime(self.app.dropvec_settings).remove(task)


@task_retry.connect
def count_retry(**_: Any) -> None:
    """A task retried after a service error: counted in the worker and in the totals (unless the
    service that failed is Redis itself)."""
    runtime = get_runtime(app.dropvec_settings)  # type: ignore[attr-defined]
    runtime.metrics.tasks.labels("retried").inc()
    try:
        runtime.state.count({"task_retries": 1})
    except redis.RedisError as exc:
        log.debug("retry not counted: %s", exc)
