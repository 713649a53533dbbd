"""One error boundary: each adapter lets only dropvec's errors out, and Celery retries exactly
the outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import fakeredis
import grpc
import pytest
from kombu.exceptions import OperationalError
from pymilvus.exceptions import MilvusException

from dropvec.config.errors import (
    DropvecError,
    LLMUnavailable,
    MilvusUnavailable,
    RedisUnavailable,
    ServiceUnavailable,
    mapping,
    one_line,
)
from dropvec.config.messages import RemoveTask
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore
from dropvec.workers.app import publishing, send_removal
from dropvec.workers.store import milvus_errors


def test_the_services_errors_are_dropvec_errors_under_one_parent() -> None:
    for error in (RedisUnavailable, MilvusUnavailable, LLMUnavailable):
        assert issubclass(error, ServiceUnavailable) and issubclass(error, DropvecError)


def test_the_ledger_raises_redis_unavailable_when_redis_is_down() -> None:
    server = fakeredis.FakeServer()
    state = StateStore(fakeredis.FakeRedis(server=server, decode_responses=True))
    state.counters.count({"files:queued": 1})  # (it works while Redis is up)
    server.connected = False
    with pytest.raises(RedisUnavailable, match="^Redis: ConnectionError"):
        state.get_file("doc")
    with pytest.raises(RedisUnavailable):
        list(state.iter_files())  # (a generator: mapped while it is iterated)
    with pytest.raises(RedisUnavailable):
        state.task_done("run", "doc", 1, 0, chunks=1, embedded=1, reused=0)


class BrokenBroker:
    """A Celery app whose broker cannot be reached."""

    @contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, *args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_the_task_queue_raises_redis_unavailable_when_its_broker_is_down() -> None:
    with (
        pytest.raises(RedisUnavailable, match="the task queue: OperationalError"),
        publishing(BrokenBroker()) as send,
    ):  # type: ignore[arg-type]
        send("dropvec.embed_chunks", {})
    with pytest.raises(RedisUnavailable):
        send_removal(BrokenBroker(), RemoveTask(doc_id="d", file_path="/x", below_generation=2))  # type: ignore[arg-type]


def test_milvus_errors_leave_the_store_as_milvus_unavailable_from_any_kind_of_function() -> None:
    @milvus_errors
    def plain() -> None:
        raise MilvusException(2, "Fail connecting to server on 127.0.0.1:19530")

    @milvus_errors
    async def coroutine() -> None:
        raise grpc.RpcError("unavailable")

    @milvus_errors
    def generator() -> Iterator[int]:
        yield 1
        raise ConnectionError("reset by peer")

    with pytest.raises(MilvusUnavailable, match="^Milvus: MilvusException"):
        plain()
    with pytest.raises(MilvusUnavailable):
        asyncio.run(coroutine())
    with pytest.raises(MilvusUnavailable):
        list(generator())


def test_other_errors_pass_through_unchanged() -> None:
    @mapping((OSError,), MilvusUnavailable, "Milvus")
    def bug() -> None:
        raise KeyError("a fault of ours, not an outage")

    with pytest.raises(KeyError):
        bug()


class Retried(Exception):
    pass


class FakeTask:
    """What ``wait_out`` reads of a bound Celery task, and its ``retry`` recorded."""

    def __init__(self, retries: int, kwargs: dict, **settings: object) -> None:
        self.app = SimpleNamespace(dropvec_settings=Settings(_env_file=None, **settings))  # type: ignore[call-arg]
        self.request = SimpleNamespace(retries=retries, kwargs=kwargs)
        self.retried: dict = {}

    def retry(self, **options: object) -> Exception:
        self.retried = options
        return Retried()


def test_an_outage_is_waited_out_never_past_half_the_lease_then_the_task_gives_up() -> None:
    from dropvec.workers.tasks import TRANSIENT_ERRORS, embed_chunks, embed_files, remove_chunks, wait_out

    assert TRANSIENT_ERRORS == (ServiceUnavailable,)
    # no count of tries limits a task (Celery's default would be 3): the outage's length does
    assert embed_chunks.max_retries is embed_files.max_retries is remove_chunks.max_retries is None
    down = MilvusUnavailable("Milvus: down")
    # A first failure: tried again soon, the outage's start carried with the task
    task = FakeTask(0, {}, task_lease_seconds=10)
    with pytest.raises(Retried):
        wait_out(task, down, 0.0)  # type: ignore[arg-type]
    since = task.retried["kwargs"]["outage_since"]
    assert abs(since - time.time()) < 5 and 1 <= task.retried["countdown"] <= 2
    # However many tries later, never put off past half the lease (10 s here)
    late = FakeTask(30, {"outage_since": since}, task_lease_seconds=10)
    with pytest.raises(Retried):
        wait_out(late, down, since)  # type: ignore[arg-type]
    assert late.retried["countdown"] <= 5
    # Once the outage has lasted DROPVEC_OUTAGE_SECONDS, the task gives up with the outage's error
    with pytest.raises(MilvusUnavailable):
        wait_out(FakeTask(9, {}, outage_seconds=60), down, time.time() - 61)  # type: ignore[arg-type]
    # A removal never does
    with pytest.raises(Retried):
        wait_out(FakeTask(9, {}, outage_seconds=60), down, time.time() - 10**6, forever=True)  # type: ignore[arg-type]


def test_one_line_folds_a_message_and_names_its_type() -> None:
    assert one_line(ValueError("two\n  lines")) == "ValueError: two lines"
    assert len(one_line(ValueError("x" * 1000), limit=50)) == len("ValueError: ") + 50
