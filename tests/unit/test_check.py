"""The check's pure parts: what a file's rows are compared by (the id digest), what counts as
work on its way, and how the last check shows in `status` and the metrics (the ledger on
fakeredis; the check itself runs against real services in tests/integration/test_check.py)."""

from __future__ import annotations

import time

import fakeredis
from prometheus_client import CollectorRegistry, generate_latest

from dropvec.check import Finding, Problem, Report, StoredDoc, compare
from dropvec.config.ids import doc_id_for, ids_digest
from dropvec.config.records import FileRecord, FileStatus, Replaced
from dropvec.ledger.metrics import PipelineCollector
from dropvec.ledger.state import StateStore, TasksAlive
from dropvec.status import checked


def test_the_id_digest_is_order_free_and_adds_up() -> None:
    ids = [f"{i:032x}" for i in range(10)]
    assert ids_digest(ids) == ids_digest(reversed(ids)) == ids_digest(ids[5:], ids_digest(ids[:5]))
    assert ids_digest(ids) != ids_digest(ids[:9]) != ids_digest([*ids[:9], "another"])


def stored(rows: dict[int, list[str]], path: str = "/f/a.md") -> StoredDoc:
    doc = StoredDoc(path=path)
    for generation, ids in rows.items():
        doc.rows[generation] = len(ids)
        doc.sums[generation] = int(ids_digest(ids), 16)
    return doc


def test_an_indexed_version_is_compared_by_count_and_digest_and_older_rows_are_orphans() -> None:
    ids = ["a", "b", "c"]
    record = FileRecord(
        path="/f/a.md", status=FileStatus.INDEXED, generation=4, chunks_total=3, ids=ids_digest(ids)
    )
    doc = doc_id_for(record.path)
    assert compare({record.path: record}, {doc: stored({4: ids})}, TasksAlive(), set(), None) == []
    found = compare(
        {record.path: record}, {doc: stored({4: ["a", "b", "x"], 2: ["o"]})}, TasksAlive(), set(), None
    )
    assert [(p.finding, p.generations) for p in found] == [(Finding.EXTRA, ()), (Finding.ORPHANS, (2,))]
    missing = compare({record.path: record}, {doc: stored({4: ["a"]})}, TasksAlive(), set(), None)
    assert [(p.finding, p.rows) for p in missing] == [(Finding.MISSING, 2)]
    # a removal on its way, or a version being replaced, is no finding
    alive = TasksAlive(removals={doc: 4})
    assert compare({record.path: record}, {doc: stored({4: ids, 2: ["o"]})}, alive, set(), None) == []
    moving = FileRecord(path="/f/b.md", status=FileStatus.QUEUED, generation=9, replaces=(Replaced(doc, 10),))
    both = {record.path: record, moving.path: moving}
    assert compare(both, {doc: stored({4: ids, 2: ["o"]})}, TasksAlive(), set(), None) == []


def test_a_file_whose_version_moved_while_the_rows_were_read_is_left_for_the_next_check() -> None:
    # Given the ledger read at version 4, and rows of version 5 (written while the rows streamed)
    # and of a file started meanwhile, which the ledger read before knew nothing of
    ids = ["a", "b"]
    record = FileRecord(path="/f/a.md", status=FileStatus.INDEXED, generation=4, chunks_total=2,
                        ids=ids_digest(ids))  # fmt: skip
    doc, new = doc_id_for(record.path), doc_id_for("/f/new.md")
    rows = {doc: stored({4: ids, 5: ["c", "d"]}), new: stored({7: ["e"]}, "/f/new.md")}
    # When they are compared as they were read, both are orphans; the unknown one by name
    found = compare({record.path: record}, rows, TasksAlive(), set(), None)
    assert [(p.finding, p.doc_id, p.generations, p.unknown) for p in found] == [
        (Finding.ORPHANS, doc, (5,), False), (Finding.ORPHANS, new, (7,), True),
    ]  # fmt: skip
    # Then, told they moved (the ledger read again after the rows says so), nothing is found
    assert compare({record.path: record}, rows, TasksAlive(), set(), None, moving={doc, new}) == []


def test_work_seen_by_either_look_at_the_queue_counts() -> None:
    first = TasksAlive(versions={("a", 1)}, removals={"x": 3})
    second = TasksAlive(versions={("b", 2)}, removals={"x": 5, "y": 1})
    merged = first.merged(second)
    assert merged.versions == {("a", 1), ("b", 2)} and merged.removals == {"x": 5, "y": 1}


def test_hashes_written_while_the_set_is_rebuilt_are_in_the_new_set() -> None:
    state = StateStore(fakeredis.FakeRedis(decode_responses=False))
    state.hashes.add("c", ["aa", "bb"])
    rebuild = state.hashes.rebuild("c")
    rebuild.add(["aa"])  # (bb's rows are gone)
    state.hashes.add("c", ["cc"])  # a worker writes while the rows are read
    rebuild.commit()
    assert state.hashes.may_be_stored("c", ["aa", "bb", "cc"]) == ["aa", "cc"]


def test_the_last_check_shows_in_status_and_the_metrics() -> None:
    state = StateStore(fakeredis.FakeRedis(decode_responses=True))
    assert checked(state.last_check()) == "never run (dropvec check)"
    report = Report([Problem(Finding.MISSING, "/f/a.md", "2 of its 3 chunks are not stored")], at=time.time())
    state.save_check(report.summary())
    assert checked(state.last_check()).startswith("1 missing at ")
    text = generate_latest(_registry(state)).decode()
    assert 'dropvec_check_findings{finding="missing"} 1.0' in text
    assert 'dropvec_check_findings{finding="orphans"} 0.0' in text


def _registry(state: StateStore) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(state))
    return registry
