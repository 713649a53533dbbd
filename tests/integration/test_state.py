"""Per-file state on a real Redis: redelivered tasks count once; a streamed file is indexed only
when its last task is both sent and done, in whichever order those happen."""

from __future__ import annotations

import uuid

import pytest

from dropvec.state import StateStore
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def state(stack: Stack) -> StateStore:
    return StateStore.from_url(stack.settings.redis_url)


def start(state: StateStore) -> tuple[str, str]:
    run, doc = uuid.uuid4().hex, uuid.uuid4().hex
    state.start_run(run)
    state.file_started(run, doc, path="/in/f.txt", sha256="s", model="m")
    return run, doc


def test_a_task_delivered_twice_is_counted_once(state: StateStore) -> None:
    run, doc = start(state)
    assert state.task_done(run, doc, 0, 32) is True
    assert state.task_done(run, doc, 0, 32) is False
    assert state.get_file(doc)["chunks_done"] == "32"
    assert state.progress(run).chunks_done == 32


def test_a_file_is_indexed_when_all_tasks_are_done_after_the_last_is_sent(state: StateStore) -> None:
    run, doc = start(state)
    state.task_done(run, doc, 0, 32)
    assert state.get_file(doc)["status"] == "indexing"
    state.file_enqueued(run, doc, chunks=40, tasks=2)
    assert state.get_file(doc)["status"] == "indexing"
    state.task_done(run, doc, 1, 8)
    assert state.get_file(doc)["status"] == "indexed"
    assert state.progress(run).finished


def test_a_file_whose_tasks_finish_before_the_producer_is_done_is_indexed_at_the_end(
    state: StateStore,
) -> None:
    run, doc = start(state)
    state.task_done(run, doc, 0, 32)
    state.task_done(run, doc, 1, 8)
    assert state.get_file(doc)["status"] == "indexing"
    assert not state.progress(run).finished
    state.file_enqueued(run, doc, chunks=40, tasks=2)
    assert state.get_file(doc)["status"] == "indexed"
    p = state.progress(run)
    assert (p.files, p.files_done, p.chunks_total, p.chunks_done, p.finished) == (1, 1, 40, 40, True)


def test_a_failed_task_fails_its_file_once_with_the_reason(state: StateStore) -> None:
    run, doc = start(state)
    state.task_failed(run, doc, "/in/f.txt", "MilvusException: gone")
    state.task_failed(run, doc, "/in/f.txt", "MilvusException: gone")
    assert state.get_file(doc)["status"] == "failed"
    p = state.progress(run)
    assert (p.files_failed, p.finished) == (1, True)
    assert p.problems == [{"path": "/in/f.txt", "status": "failed", "reason": "MilvusException: gone"}]
