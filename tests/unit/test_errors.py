"""One error boundary: each adapter lets only dropvec's errors out, and Celery retries exactly
the outages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
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


def test_celery_retries_exactly_the_outages() -> None:
    from dropvec.workers.tasks import TRANSIENT_ERRORS, embed_chunks, remove_chunks

    assert TRANSIENT_ERRORS == (ServiceUnavailable,)
    assert tuple(embed_chunks.autoretry_for) == tuple(remove_chunks.autoretry_for) == TRANSIENT_ERRORS


def test_one_line_folds_a_message_and_names_its_type() -> None:
    assert one_line(ValueError("two\n  lines")) == "ValueError: two lines"
    assert len(one_line(ValueError("x" * 1000), limit=50)) == len("ValueError: ") + 50
