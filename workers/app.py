"""The Celery app, configured from Settings. ``celery -A workers.app worker`` works too."""

from __future__ import annotations

from celery import Celery

from config.messages import REMOVE_TASK, RemoveTask
from config.settings import QUEUE, Settings

#: Longest a task may stay unacknowledged before Redis hands it to another worker.
VISIBILITY_TIMEOUT_SECONDS = 3600


def create_app(settings: Settings) -> Celery:
    app = Celery("dropvec", broker=settings.redis_url, include=["workers.tasks"])
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
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    app.dropvec_settings = settings  # type: ignore[attr-defined]
    return app


def send_removal(app: Celery, task: RemoveTask) -> None:
    """Queue the removal of a file's old chunks (from the producer, or a task that failed)."""
    app.send_task(REMOVE_TASK, args=[task.model_dump(mode="json")], queue=QUEUE)


_settings = Settings()
_settings.prepare_environment()
app = create_app(_settings)
