"""The task queue: the Celery app, configured from Settings, and the one way to queue a removal.

``celery -A dropvec.workers.app worker`` works too: the module's ``app`` is made from the
environment's settings when it is first asked for, not when the module is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_shutting_down
from celery.utils.nodenames import default_nodename, host_format
from kombu.exceptions import OperationalError

from dropvec.config.errors import RedisUnavailable, mapping
from dropvec.config.messages import REMOVE_TASK, RemoveTask
from dropvec.config.settings import QUEUE, Settings

log = logging.getLogger(__name__)
#: Pause before a Celery worker that stopped on an error is started again.
RESTART_SECONDS = 2


def create_app(settings: Settings) -> Celery:
    app = Celery("dropvec", broker=settings.redis_url, include=["dropvec.workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # The lease: a task taken by a worker that dies (SIGKILL, power cut) goes back to the queue
        # once it is unacknowledged for task_lease_seconds; live workers look for such tasks every
        # few seconds (kombu's default scan is 100 s apart).
        broker_transport_options={
            "visibility_timeout": settings.task_lease_seconds,
            "unacked_restore_interval": max(1, min(10, settings.task_lease_seconds // 4)),
            "unacked_restore_throttle": 1,
        },
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_use_ssl=settings.redis_tls or None,
    )
    app.dropvec_settings = settings  # type: ignore[attr-defined]
    return app


def run_worker(
    app: Celery, *, hostname: str | None = None, loglevel: str = "INFO", quiet: bool = False
) -> int:
    """Consume the queue with a solo pool until asked to stop (SIGTERM, SIGINT); the exit code.
    ``hostname``: the node name, ``%h`` expanded (default: celery@host); ``quiet``: no banner.

    Celery gives up on a worker whose broker connection broke while kombu was closing a channel
    ("Unrecoverable error: AttributeError(... 'hostname')", kombu's long-standing race in restoring
    unacknowledged messages). Its tasks are safe (acks late), so the worker is started again in
    this process, with the model still loaded; a shutdown asked for by a signal is not undone.
    """
    asked: list[object] = []
    worker_shutting_down.connect(lambda **kw: asked.append(kw.get("sig")), weak=False)
    while True:
        worker = app.Worker(
            hostname=host_format(default_nodename(hostname)), loglevel=loglevel,
            pool_cls="solo", queues=[QUEUE], without_gossip=True, without_mingle=True, quiet=quiet,
        )  # fmt: skip
        worker.start()
        code = int(worker.exitcode or 0)
        if code == 0 or asked:
            return code
        log.warning("the Celery worker stopped (exit code %s); starting it again", code)
        time.sleep(RESTART_SECONDS)


#: What the broker's client raises when Redis cannot be reached.
BROKER_ERRORS = (OperationalError, redis.RedisError, ConnectionError)
_broker_errors = mapping(BROKER_ERRORS, RedisUnavailable, "the task queue")


@contextmanager
@_broker_errors  # (on opening and closing the connection, and on every send in the block)
def publishing(app: Celery) -> Iterator[Callable[..., None]]:
    """``send(task name, message)`` for as long as the block runs, over one broker connection.

    What logs and monitors show for a message's arguments is a line about it (``about``): Celery
    would otherwise print the message itself, every chunk's text, a tenth of the producer's time.
    """

    def send(name: str, message: dict[str, Any], **kwargs: Any) -> None:
        app.send_task(
            name, args=[message], kwargs=kwargs, queue=QUEUE, producer=publisher,
            argsrepr=about(message), kwargsrepr=repr(kwargs),
        )  # fmt: skip

    with app.producer_or_acquire() as publisher:
        yield send


def about(message: dict[str, Any]) -> str:
    """A task message in a few words: its file and chunks, or its files."""
    if "parts" in message:
        chunks = sum(len(part["chunks"]) for part in message["parts"])
        return f"({len(message['parts'])} files, {chunks} chunks)"
    if "chunks" in message:
        return f"({message['file_path']!r} task {message['task_index']}, {len(message['chunks'])} chunks)"
    return repr(message)


@_broker_errors
def send_removal(app: Celery, task: RemoveTask) -> None:
    """Queue the removal of a file's old chunks (from the producer, or a task that failed)."""
    app.send_task(REMOVE_TASK, args=[task.model_dump(mode="json")], queue=QUEUE)


def __getattr__(name: str) -> Celery:
    """``app``: the app of the environment's settings, made on first use (for Celery's ``-A``)."""
    if name != "app":
        raise AttributeError(name)
    settings = Settings()
    settings.prepare_environment()
    globals()["app"] = made = create_app(settings)
    return made
