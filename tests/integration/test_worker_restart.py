"""A Celery worker that gives up on an unrecoverable error is started again in its process
(``workers.app.run_worker``); a SIGTERM still ends it. Real Valkey and Celery; the error is
injected where kombu's race raises it (celery/kombu#582), in the consumer's start."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from dropvec.config.settings import QUEUE
from dropvec.stack import start_redis
from tests.integration.conftest import local_settings, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys
from celery import Celery
from celery.worker.consumer import consumer
from dropvec.config.settings import QUEUE
from dropvec.workers.app import run_worker

app = Celery("restart-test", broker=sys.argv[1])
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False)

@app.task(name="touch")
def touch(path):
    open(path, "a").write("ran\\n")

start, calls = consumer.Consumer.start, []

def fail_once(self):
    calls.append(1)
    if len(calls) == 1:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")
    return start(self)

consumer.Consumer.start = fail_once
sys.exit(run_worker(app, hostname="restart@%h"))
"""


def test_a_worker_stopped_by_an_unrecoverable_error_starts_again(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    redis = start_redis(settings, tmp_path)
    assert redis is not None
    log_path, marker = tmp_path / "worker.log", tmp_path / "ran"
    try:
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER, settings.redis_url], cwd=ROOT, stdout=log, stderr=log
            )
        try:
            # Given a worker whose first consumer dies with kombu's error
            Celery(broker=settings.redis_url).send_task("touch", args=[str(marker)], queue=QUEUE)
            # Then it starts again and takes the task
            wait_for(marker.exists, 60, "the task to run after the restart")
            text = log_path.read_text()
            assert "Unrecoverable error" in text and "starting it again" in text, text
            # And a SIGTERM ends it, with exit code 0
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, log_path.read_text()
            assert "starting it again" not in log_path.read_text().split("Warm shutdown")[-1]
        finally:
            if worker.poll() is None:
                worker.kill()
    finally:
        redis.stop()
