"""Reconciliation and file versions, in milliseconds: the real producer and the real worker
runtime, with the task queue, the Milvus writer and the model replaced by in-memory fakes and the
ledger's Redis by fakeredis (its Lua scripts run for real).

After every step the store must hold exactly the chunks of the files on disk, once each.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dropvec.config.bm25 import counted
from dropvec.config.errors import InputFileError
from dropvec.config.ids import doc_id_for
from dropvec.config.messages import EMBED_FILES_TASK, EMBED_TASK
from dropvec.config.records import UNCHANGED
from dropvec.config.settings import KEY_PREFIX, QUEUE, Settings
from dropvec.producer.chunk import iter_chunks
from dropvec.producer.enqueue import IngestReport, Producer
from dropvec.producer.files import expand
from dropvec.producer.read import read_sections
from dropvec.workers import runtime
from dropvec.workers.loop import LoopThread
from dropvec.workers.runtime import WorkerRuntime, fill_terms
from dropvec.workers.store import TEXT
from tests.fakes import FakeEmbedder, MemoryQueue, MemoryStore, deliver, memory_ledger

PARAGRAPH = "Paragraph {i} of {name}: the otter floats on its back and cracks a shell on its chest. " * 3


def text(name: str, paragraphs: int = 12) -> str:
    return "\n\n".join(PARAGRAPH.format(i=i, name=name) for i in range(paragraphs))


class Pipeline:
    """A producer and one worker runtime on fakes, over ``inbox``."""

    def __init__(self, inbox: Path, chunks_per_task: int = 4) -> None:
        self.inbox = inbox
        self.settings = Settings(_env_file=None, inbox=inbox, chunks_per_task=chunks_per_task, chunk_size=128)  # type: ignore[call-arg]
        self.ledger, self.queue, self.store = memory_ledger(), MemoryQueue(), MemoryStore()
        self.embedder = FakeEmbedder()
        self.producer = Producer(self.settings, self.queue, self.ledger)  # type: ignore[arg-type]
        self.loop = LoopThread()
        self.ledger.terms.reset(self.settings.collection)  # (as a worker that creates the collection)
        self.runtime = WorkerRuntime(
            self.settings, embedder=self.embedder, state=self.ledger, writer=self.store, loop=self.loop
        )  # type: ignore[arg-type]

    def sync(self, *paths: Path, deleted: tuple[Path, ...] = (), twice: bool = False) -> IngestReport:
        """Reconcile ``paths`` (default: the inbox), then let the worker take every task."""
        report = self.producer.ingest(list(paths) or [self.inbox], deleted=deleted)
        deliver(self.queue, self.runtime, twice=twice)
        return report

    def expected(self) -> Counter[tuple[str, int, str]]:
        chunks: Counter[tuple[str, int, str]] = Counter()
        for path in expand([self.inbox]):
            try:
                sections = read_sections(path)
            except InputFileError:
                continue
            for c in iter_chunks(
                sections, doc_id=doc_id_for(str(path)),
                file_metadata={"file_path": str(path), "file_name": path.name},
                tokens=self.producer.window, chunk_size=self.settings.chunk_size,
                chunk_overlap=self.settings.chunk_overlap,
            ):  # fmt: skip
                chunks[(str(path), c.index, c.text)] += 1
        return chunks

    def stored(self) -> Counter[tuple[str, int, str]]:
        return Counter((r.file_path, r.chunk_index, r.text) for r in self.store.rows.values())

    def pages(self, size: int = 3) -> list[list[dict[str, str]]]:
        rows = [{TEXT: r.text} for r in self.store.rows.values()]
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    def record(self, path: Path) -> dict[str, str]:
        return self.ledger.get_file(doc_id_for(str(path)))

    def assert_in_sync(self) -> None:
        assert self.stored() == self.expected()
        for path in expand([self.inbox]):
            assert self.record(path).get("status") == "indexed", (path, self.record(path))
        # BM25's statistics count exactly the stored rows, whatever was written and removed
        rows = counted(r.text for r in self.store.rows.values())
        collection = self.settings.collection
        docs, df = self.ledger.terms.document_frequencies(collection, rows.df)
        assert (docs, self.ledger.terms.totals(collection)[1], df) == (rows.docs, rows.tokens, dict(rows.df))
        assert self.ledger.r.hlen(self.ledger.terms.key(collection)) == len(rows.df)


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    p = Pipeline(inbox)
    # the rows' texts, as the worker reads them from Milvus to count BM25's statistics afresh
    monkeypatch.setattr(runtime, "iter_rows", lambda settings, fields: iter(p.pages()))
    yield p
    p.loop.stop()


def test_a_dropped_file_is_indexed_and_an_unchanged_one_is_not_read_again(pipeline: Pipeline) -> None:
    path = pipeline.inbox / "notes.txt"
    path.write_text(text("notes"))
    report = pipeline.sync()
    assert report.count("queued") == 1 and report.chunks > 4  # (more than one task)
    pipeline.assert_in_sync()
    record = pipeline.record(path)
    assert int(record["chunks_embedded"]) == int(record["chunks_total"]) == report.chunks
    # When the folder is reconciled again, the unchanged file is skipped without a task
    again = pipeline.sync()
    assert [o.reason for o in again.outcomes] == [UNCHANGED]
    assert not pipeline.queue.sent
    pipeline.assert_in_sync()


def test_an_edit_makes_a_new_version_that_replaces_the_old_and_reuses_its_vectors(pipeline: Pipeline) -> None:
    path = pipeline.inbox / "essay.txt"
    path.write_text(text("essay", 30))
    pipeline.sync()
    before = pipeline.record(path)
    embedded = len(pipeline.embedder.embedded)
    # When one paragraph in the middle changes
    paragraphs = path.read_text().split("\n\n")
    paragraphs[15] += " A sentence nobody wrote before."
    path.write_text("\n\n".join(paragraphs))
    pipeline.sync(path)
    # Then only the new version is stored, and only the changed chunks were embedded
    pipeline.assert_in_sync()
    after = pipeline.record(path)
    assert int(after["generation"]) > int(before["generation"])
    assert {r.generation for r in pipeline.store.rows.values()} == {int(after["generation"])}
    assert 1 <= len(pipeline.embedder.embedded) - embedded <= 3
    assert int(after["chunks_reused"]) >= int(after["chunks_total"]) - 3


@pytest.mark.parametrize("where", ["renamed.txt", "sub/moved.txt"])
def test_a_rename_or_move_keeps_every_vector_and_the_old_path_goes(pipeline: Pipeline, where: str) -> None:
    old = pipeline.inbox / "first.txt"
    old.write_text(text("first"))
    pipeline.sync()
    embedded = len(pipeline.embedder.embedded)
    # When the file is renamed (or moved into a subfolder) and the folder reconciled
    new = pipeline.inbox / where
    new.parent.mkdir(exist_ok=True)
    old.rename(new)
    report = pipeline.sync()
    # Then it is read under its new path, nothing is embedded, and the old path is gone
    assert [o.reason for o in report.outcomes if o.status == "queued"] == [f"moved from {old}"]
    assert len(pipeline.embedder.embedded) == embedded
    assert not pipeline.record(old)
    pipeline.assert_in_sync()


def test_a_deleted_file_or_folder_takes_its_chunks_with_it(pipeline: Pipeline) -> None:
    (pipeline.inbox / "keep.txt").write_text(text("keep"))
    (pipeline.inbox / "sub").mkdir()
    (pipeline.inbox / "sub" / "a.txt").write_text(text("a"))
    (pipeline.inbox / "sub" / "b.md").write_text(text("b"))
    pipeline.sync()
    pipeline.assert_in_sync()
    # When a file, then a whole folder, are deleted (as the watcher reports them)
    (pipeline.inbox / "keep.txt").unlink()
    report = pipeline.sync(deleted=(pipeline.inbox / "keep.txt",))
    assert report.count("removed") == 1
    shutil.rmtree(pipeline.inbox / "sub")
    report = pipeline.sync(deleted=(pipeline.inbox / "sub",))
    # Then nothing of them is stored and they have no record left
    assert report.count("removed") == 2
    assert not pipeline.store.rows
    assert not pipeline.ledger.paths_under(str(pipeline.inbox))


def test_a_file_deleted_while_it_is_read_leaves_nothing_behind(pipeline: Pipeline) -> None:
    path = pipeline.inbox / "vanishing.txt"
    path.write_text(text("vanishing", 30))

    def delete_after_first_task(name: str, message: dict) -> None:
        if name == EMBED_TASK and path.exists():
            path.unlink()

    pipeline.queue.after_send = delete_after_first_task
    report = pipeline.sync()
    # Then the producer stopped sending it, removed it, and the task already sent wrote nothing
    # that stays
    assert [o.status for o in report.outcomes] == ["removed"]
    assert not pipeline.store.rows
    assert not pipeline.record(path)


def test_a_task_delivered_twice_is_written_and_counted_once(pipeline: Pipeline) -> None:
    path = pipeline.inbox / "twice.txt"
    path.write_text(text("twice"))
    report = pipeline.sync(twice=True)
    pipeline.assert_in_sync()
    record = pipeline.record(path)
    assert int(record["chunks_done"]) == int(record["chunks_total"]) == report.chunks
    assert int(record["chunks_embedded"]) + int(record["chunks_reused"]) == report.chunks


def test_statistics_that_redis_lost_are_counted_again_from_the_rows(pipeline: Pipeline) -> None:
    (pipeline.inbox / "kept.txt").write_text(text("kept"))
    pipeline.sync()
    pipeline.ledger.terms.forget(pipeline.settings.collection)  # (Redis lost them)
    (pipeline.inbox / "kept.txt").write_text(text("kept, edited"))
    (pipeline.inbox / "new.txt").write_text(text("new"))
    pipeline.sync()
    pipeline.assert_in_sync()


def test_a_count_from_the_rows_leaves_statistics_that_appeared_while_it_ran(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker counts a collection whose statistics Redis does not hold; while it reads the rows,
    # another worker creates them and counts its own writes: those are kept, not overwritten.
    (pipeline.inbox / "first.txt").write_text(text("first"))
    pipeline.sync()
    terms, collection = pipeline.ledger.terms, pipeline.settings.collection
    terms.forget(collection)
    theirs = counted(["what another worker wrote meanwhile"])

    def rows(settings: Settings, fields: list[str]) -> Iterator[list[dict[str, str]]]:
        pages = pipeline.pages()
        yield pages[0]
        terms.reset(collection)
        terms.apply(collection, theirs)
        yield from pages[1:]

    monkeypatch.setattr(runtime, "iter_rows", rows)
    assert fill_terms(pipeline.settings, pipeline.ledger) == len(pipeline.store.rows)
    assert terms.totals(collection) == (theirs.docs, theirs.tokens)


def test_a_worker_waits_for_another_counting_the_statistics(pipeline: Pipeline) -> None:
    terms, collection = pipeline.ledger.terms, pipeline.settings.collection
    terms.forget(collection)
    assert terms.claim_fill(collection)  # (another worker counts them)
    theirs = counted(["the other worker's count"])
    done = threading.Timer(0.3, terms.replace, (collection, theirs), {"only_if_missing": True})
    done.start()
    assert fill_terms(pipeline.settings, pipeline.ledger) == 0  # (waited, read no rows)
    assert terms.totals(collection)[0] == 1
    done.join()


def test_the_tasks_of_a_replaced_version_are_dropped(pipeline: Pipeline) -> None:
    # Given version 1 of a file queued, its tasks not yet taken by any worker
    path = pipeline.inbox / "draft.txt"
    path.write_text(text("draft one"))
    pipeline.producer.ingest([path])
    stale = pipeline.queue.take()
    # When the file is edited and queued again before a worker takes version 1's tasks
    path.write_text(text("draft two"))
    pipeline.producer.ingest([path])
    fresh = pipeline.queue.take()
    pipeline.queue.sent = [*stale, *fresh]
    deliver(pipeline.queue, pipeline.runtime)
    # Then only version 2 is stored, and the file is indexed
    pipeline.assert_in_sync()
    assert all("draft two" in r.text for r in pipeline.store.rows.values())


def test_a_file_that_cannot_be_read_keeps_no_chunks(pipeline: Pipeline) -> None:
    path = pipeline.inbox / "notes.txt"
    path.write_text(text("notes"))
    pipeline.sync()
    # When it is replaced by binary data with the same name
    path.write_bytes(bytes(4096))
    report = pipeline.sync()
    assert [(o.status, o.reason) for o in report.outcomes] == [("failed", "binary data, not text")]
    assert not pipeline.store.rows
    assert pipeline.record(path)["status"] == "failed"


def small(name: str) -> str:
    return f"A short note called {name}: the otter sleeps holding hands with another otter."


def test_a_task_is_written_while_it_embeds_and_waits_only_for_its_last_few_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropvec.workers.runtime import EMBED_LAST, WRITE_AT_LEAST

    assert (EMBED_LAST, WRITE_AT_LEAST) == (8, 64)  # (the figures below)
    (tmp_path / "inbox").mkdir()
    pipeline = Pipeline(tmp_path / "inbox", chunks_per_task=64)
    path = pipeline.inbox / "long.txt"
    path.write_text(text("long", paragraphs=140))
    # Given a file read alone (no pass starts or ends with it: tasks of 64 chunks, then the rest)
    assert pipeline.producer.ingest_file(path, "run").chunks == 70
    events: list[tuple[str, int]] = []
    embed, write = pipeline.embedder.get_text_embedding_batch, pipeline.store.write

    def embedding(texts: list[str]) -> list[list[float]]:
        events.append(("embed", len(texts)))
        return embed(texts)

    def writing(nodes: list[Any], **kwargs: Any) -> Any:
        events.append(("write", len(nodes)))  # (when the write is handed to the loop)
        return write(nodes, **kwargs)

    pipeline.embedder.embed_batch_size = 16  # type: ignore[attr-defined]
    monkeypatch.setattr(pipeline.embedder, "get_text_embedding_batch", embedding)
    monkeypatch.setattr(pipeline.store, "write", writing)
    deliver(pipeline.queue, pipeline.runtime)
    # Then the task of 64 wrote all but its last 8 chunks while those embedded, and waited only
    # for a write of those 8; the task of 6, for a write of its 6
    assert events == [
        *[("embed", 16)] * 3, ("embed", 8), ("write", 56), ("embed", 8), ("write", 8),
        ("embed", 6), ("write", 6),
    ]  # fmt: skip
    pipeline.assert_in_sync()
    pipeline.loop.stop()


def test_small_files_travel_together_and_each_is_counted_as_its_own(pipeline: Pipeline) -> None:
    for i in range(10):
        (pipeline.inbox / f"note-{i}.txt").write_text(small(f"note {i}"))
    (pipeline.inbox / "long.txt").write_text(text("long"))
    pipeline.producer.ingest([pipeline.inbox])
    sent = pipeline.queue.sent[:]
    # Then the ten one-chunk notes left in packs of a task's worth of chunks (4 here), the long
    # file in tasks of its own; the last pack, which ends the pass, in quarters (one note each)
    packs = [m for name, m in sent if name == EMBED_FILES_TASK]
    assert sorted(len(m["parts"]) for m in packs) == [4, 4]
    assert all(len(m["chunks"]) <= 4 for name, m in sent if name == EMBED_TASK)
    assert [Path(m["file_path"]).name for _, m in sent[-2:]] == ["note-8.txt", "note-9.txt"]
    # And once the worker took them, every file is indexed, with its own counts
    deliver(pipeline.queue, pipeline.runtime)
    pipeline.assert_in_sync()
    for i in range(10):
        record = pipeline.record(pipeline.inbox / f"note-{i}.txt")
        assert (record["task_count"], record["chunks_total"], record["chunks_done"]) == ("1", "1", "1")


def test_a_pass_starts_and_ends_in_small_tasks_its_pack_sent_before_the_last(pipeline: Pipeline) -> None:
    # (so that the workers start together, rather than wait for a full task each, and share its
    # last chunks, rather than one worker taking a full task last)
    (pipeline.inbox / "a-note.txt").write_text(small("a note"))
    (pipeline.inbox / "b-note.txt").write_text(small("b note"))
    (pipeline.inbox / "z-long.txt").write_text(text("long", paragraphs=40))
    assert pipeline.producer.ingest([pipeline.inbox]).chunks == 2 + 20
    sent = [(Path(m["file_path"]).name, len(m["chunks"])) for _, m in pipeline.queue.sent]
    # (tasks of 4 chunks: until 4 chunks of the pass have left, a pack or task holds 1; up to
    # the last 8 chunks of the pass, 1 a task)
    assert sent == [
        ("a-note.txt", 1), ("b-note.txt", 1), *[("z-long.txt", 1)] * 2,
        *[("z-long.txt", 4)] * 3, *[("z-long.txt", 1)] * 6,
    ]  # fmt: skip
    deliver(pipeline.queue, pipeline.runtime)
    pipeline.assert_in_sync()


def test_a_file_that_breaks_its_pack_fails_alone(pipeline: Pipeline) -> None:
    for name in ("a", "b", "poison", "c"):
        (pipeline.inbox / f"{name}.txt").write_text(small(name))
    embed = pipeline.embedder.get_text_embedding_batch

    def choke_on_poison(texts: list[str]) -> list[list[float]]:
        if any("poison" in t for t in texts):
            raise ValueError("the model cannot take this text")
        return embed(texts)

    pipeline.embedder.get_text_embedding_batch = choke_on_poison  # type: ignore[method-assign]
    pipeline.sync()
    # Then the pack was split into tasks of one file each: the poisoned file failed with the
    # reason, and nothing of it is stored; the others are indexed
    poisoned = pipeline.record(pipeline.inbox / "poison.txt")
    assert poisoned["status"] == "failed"
    assert poisoned["reason"] == "ValueError: the model cannot take this text"
    assert {r.file_path for r in pipeline.store.rows.values()} == {
        str(pipeline.inbox / f"{name}.txt") for name in ("a", "b", "c")
    }
    for name in ("a", "b", "c"):
        assert pipeline.record(pipeline.inbox / f"{name}.txt")["status"] == "indexed"


def test_a_pass_stopped_before_its_pack_left_leaves_those_files_for_the_next(pipeline: Pipeline) -> None:
    for i in range(3):
        (pipeline.inbox / f"note-{i}.txt").write_text(small(f"note {i}"))
    # Given a full queue, and the producer asked to stop while it waits for room for the pack
    pipeline.ledger.r.rpush(QUEUE, *["task"] * pipeline.settings.max_queue_depth)
    threading.Timer(0.3, pipeline.producer.stop.set).start()
    report = pipeline.producer.ingest([pipeline.inbox / f"note-{i}.txt" for i in range(3)])
    # Then the first was read (its pack leaves at once: the pass starts, ``Pack.starting``), yet
    # none was sent, none has a record, and all are counted as not read
    assert pipeline.ledger.r.get(f"{KEY_PREFIX}:generation") == "1"
    assert report.not_read == 3 and not report.outcomes
    assert not pipeline.queue.sent
    assert not pipeline.ledger.paths_under(str(pipeline.inbox))
    # And the next pass, with room, indexes them
    pipeline.ledger.r.delete(QUEUE)
    pipeline.producer.stop.clear()
    pipeline.sync()
    pipeline.assert_in_sync()


def test_a_move_whose_pack_never_left_is_found_again_by_the_next_pass(pipeline: Pipeline) -> None:
    old = pipeline.inbox / "first-name.txt"
    old.write_text(small("moving"))
    pipeline.sync()
    # When the file is renamed, and the pass that reads it is stopped before its pack leaves
    new = pipeline.inbox / "second-name.txt"
    old.rename(new)
    pipeline.ledger.r.rpush(QUEUE, *["task"] * pipeline.settings.max_queue_depth)
    threading.Timer(0.3, pipeline.producer.stop.set).start()
    assert pipeline.producer.ingest([pipeline.inbox]).not_read == 1
    # Then the next pass still sees the move: the old name's chunks go, the vector is reused
    pipeline.ledger.r.delete(QUEUE)
    pipeline.producer.stop.clear()
    embedded = len(pipeline.embedder.embedded)
    report = pipeline.sync()
    assert [o.reason for o in report.outcomes if o.status == "queued"] == [f"moved from {old}"]
    assert len(pipeline.embedder.embedded) == embedded
    pipeline.assert_in_sync()


def test_a_pack_never_holds_more_text_than_a_message_may(pipeline: Pipeline) -> None:
    from dropvec.config.messages import MAX_TASK_TEXT_CHARS, Chunk, EmbedTask
    from dropvec.producer.pack import Pack, Packed

    pack = Pack(
        pipeline.queue, pipeline.ledger, "run", 1024,  # type: ignore[arg-type]
        wait_for_room=lambda: None, retire=lambda path, replaced: None,
    )  # fmt: skip
    pack.note_sent(1024)  # (the pass has started: a pack is sent once it holds a task's worth)
    big = "x" * 10_000
    for f in range(3):  # three files of 3,000,000 characters each: two cannot share a message
        chunks = [Chunk(id=f"{f}-{i}", index=i, text=big) for i in range(300)]
        task = EmbedTask(
            run_id="run", doc_id=f"d{f}", generation=f + 1, file_path=f"/in/{f}", task_index=0, chunks=chunks
        )
        pack.add(Packed(task, "sha", "model", ()))
    pack.send()
    sent = pipeline.queue.take()
    assert [name for name, _ in sent] == [EMBED_FILES_TASK, EMBED_TASK]
    assert sum(len(c["text"]) for p in sent[0][1]["parts"] for c in p["chunks"]) <= MAX_TASK_TEXT_CHARS
