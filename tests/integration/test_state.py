"""Per-file state on a real Redis: redelivered tasks count once; a streamed file is indexed only
when its last task is both sent and done, in whichever order those happen."""

from __future__ import annotations

import uuid

import pytest

from dropvec.ledger.state import FILE_INDEXED, StateStore
from dropvec.workers.runtime import fill_stored, fill_terms
from dropvec.workers.store import ensure_collection, milvus_client
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def state(stack: Stack) -> StateStore:
    return StateStore.from_url(stack.settings.redis_url)


def start(state: StateStore, doc: str = "") -> tuple[str, str, int]:
    run, doc, gen = uuid.uuid4().hex, doc or uuid.uuid4().hex, state.next_generation()
    state.start_run(run)
    state.file_started(run, doc, path=f"/in/{doc}.txt", sha256="s", model="m", generation=gen)
    return run, doc, gen


def done(state: StateStore, run: str, doc: str, gen: int, index: int, chunks: int, embedded: int = 0) -> int:
    return state.task_done(run, doc, gen, index, chunks=chunks, embedded=embedded, reused=chunks - embedded)


def test_a_task_delivered_twice_is_counted_once(state: StateStore) -> None:
    run, doc, gen = start(state)
    assert done(state, run, doc, gen, 0, 32, embedded=30) == 1
    assert done(state, run, doc, gen, 0, 32, embedded=30) == 0
    f = state.get_file(doc)
    assert (f["chunks_done"], f["chunks_embedded"], f["chunks_reused"]) == ("32", "30", "2")
    assert state.progress(run).chunks_done == 32


def indexed_total(state: StateStore) -> float:
    return state.counters.totals().get("files:indexed", 0)


def test_a_file_is_indexed_when_all_tasks_are_done_after_the_last_is_sent(state: StateStore) -> None:
    run, doc, gen = start(state)
    done(state, run, doc, gen, 0, 32)
    assert state.get_file(doc)["status"] == "indexing"
    assert state.file_enqueued(run, doc, generation=gen, chunks=40, tasks=2) is False
    assert state.get_file(doc)["status"] == "indexing"
    before = indexed_total(state)
    assert done(state, run, doc, gen, 1, 8) == FILE_INDEXED
    assert done(state, run, doc, gen, 1, 8) == 0  # a redelivery
    assert indexed_total(state) == before + 1
    assert state.get_file(doc)["status"] == "indexed"
    assert state.get_file(doc)["indexed_at"]
    assert state.progress(run).finished


def test_a_file_whose_tasks_finish_before_the_producer_is_done_is_indexed_at_the_end(
    state: StateStore,
) -> None:
    run, doc, gen = start(state)
    done(state, run, doc, gen, 0, 32)
    done(state, run, doc, gen, 1, 8)
    assert state.get_file(doc)["status"] == "indexing"
    assert not state.progress(run).finished
    before = indexed_total(state)
    assert state.file_enqueued(run, doc, generation=gen, chunks=40, tasks=2) is True
    assert indexed_total(state) == before + 1
    assert state.get_file(doc)["status"] == "indexed"
    p = state.progress(run)
    assert (p.files, p.files_done, p.chunks_total, p.chunks_done, p.finished) == (1, 1, 40, 40, True)


def test_tasks_of_a_replaced_version_are_not_counted(state: StateStore) -> None:
    # Given a file whose first version is still being indexed
    run, doc, old = start(state)
    # When a second version starts, a late task of the first one counts for nothing
    _, _, new = start(state, doc)
    assert new > old
    assert not state.is_current(doc, old) and state.is_current(doc, new)
    assert done(state, run, doc, old, 0, 32) == 0
    assert state.get_file(doc)["chunks_done"] == "0"


def test_a_forgotten_file_is_no_longer_current_nor_listed(state: StateStore) -> None:
    run, doc, gen = start(state)
    assert f"/in/{doc}.txt" in state.paths_under("/in")
    state.forget_file(doc, f"/in/{doc}.txt")
    assert not state.is_current(doc, gen)
    assert f"/in/{doc}.txt" not in state.paths_under("/in")


def test_a_failed_task_fails_its_file_once_with_the_reason(state: StateStore) -> None:
    run, doc, gen = start(state)
    assert state.task_failed(run, doc, gen, f"/in/{doc}.txt", "MilvusException: gone") is True
    assert state.task_failed(run, doc, gen, f"/in/{doc}.txt", "MilvusException: gone") is False
    assert state.get_file(doc)["status"] == "failed"
    assert state.latest_failures(1)[0]["reason"] == "MilvusException: gone"
    p = state.progress(run)
    assert (p.files_failed, p.finished) == (1, True)
    assert p.problems == [{"path": f"/in/{doc}.txt", "status": "failed", "reason": "MilvusException: gone"}]


def test_only_hashes_written_are_looked_up_in_milvus(state: StateStore) -> None:
    collection = f"c{uuid.uuid4().hex}"
    written, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert state.hashes.may_be_stored(collection, [written, other]) == []
    state.hashes.add(collection, [written])
    assert state.hashes.may_be_stored(collection, [other, written]) == [written]
    assert state.hashes.may_be_stored(f"{collection}-else", [written]) == []
    state.hashes.forget(collection)
    assert state.hashes.may_be_stored(collection, [written]) == []


def test_a_collection_without_its_set_of_written_hashes_gets_it_back(stack: Stack, state: StateStore) -> None:
    # Given a file indexed, then the set of written hashes lost (or never made: an older dropvec)
    path = stack.root / "fill" / "note.txt"
    path.parent.mkdir()
    path.write_text(f"A note of its own: {uuid.uuid4().hex}.")
    assert stack.dropvec("ingest", str(path), "--wait", "--timeout", "120").returncode == 0
    client = milvus_client(stack.settings)
    [row] = client.query(
        stack.settings.collection, filter=f'file_path == "{path}"', output_fields=["embed_hash"],
        consistency_level="Strong",
    )  # fmt: skip
    client.close()
    collection = stack.settings.collection
    state.hashes.forget(collection)
    # When a worker starts
    assert fill_stored(stack.settings, state) >= 1
    # Then the file's vector can be found for reuse again
    assert state.hashes.may_be_stored(collection, [row["embed_hash"]]) == [row["embed_hash"]]
    assert fill_stored(stack.settings, state) == 0  # (once is enough)


def test_a_worker_that_finds_a_new_collection_finds_its_statistics(stack: Stack, state: StateStore) -> None:
    # (else it would count the rows while the creator writes, and its count could overwrite the
    # creator's: the creator sets them up before the collection exists)
    settings = stack.settings.model_copy(update={"collection": f"c{uuid.uuid4().hex}"})
    client = milvus_client(settings)
    existed: list[bool] = []

    def created() -> None:
        existed.append(client.has_collection(settings.collection))
        state.terms.reset(settings.collection)

    try:
        assert ensure_collection(settings, 8, before_create=created) and existed == [False]
        assert not ensure_collection(settings, 8, before_create=created) and existed == [False]
        assert fill_terms(settings, state) == 0 and state.terms.totals(settings.collection) == (0, 0)
    finally:
        client.drop_collection(settings.collection)
        client.close()
        state.terms.forget(settings.collection)
