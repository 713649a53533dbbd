"""Self-healing: `dropvec check` finds where the folder, the ledger and Milvus disagree, and
`--repair` makes them agree with the least work; a Redis or a Milvus that lost its data between two
runs of `dropvec up` is caught up without embedding what is still stored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from dropvec.config.bm25 import counted
from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.stack import free_port
from tests.corpus import SEED
from tests.integration.conftest import Stack, local_settings, running_stack, wait_for
from tests.integration.sync_check import expected, stored, unique_text
from tests.integration.test_up import start_up, stop_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: the tests change its rows and ledger behind dropvec's back."""
    root = tmp_path_factory.mktemp("check")
    with running_stack(local_settings(root), root, 1) as running:
        yield running


def check(stack: Stack, folder: Path, *more: str) -> tuple[int, dict]:
    result = stack.dropvec("check", str(folder), "--json", *more, timeout=600)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def findings(report: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for p in report["problems"]:
        found.setdefault(p["finding"], set()).add(Path(p["path"]).name)
    return found


def rows_of(client: MilvusClient, collection: str, path: Path) -> list[dict]:
    return client.query(
        collection, filter=f'doc_id == "{doc_id_for(str(path))}"', output_fields=["*"],
        consistency_level="Strong",
    )  # fmt: skip


def test_check_reports_drift_behind_dropvecs_back_and_repair_fixes_it_with_least_work(own: Stack) -> None:
    # Given a folder indexed and in sync
    folder = own.root / "drift"
    folder.mkdir()
    shutil.copy(SEED / "paul_graham_essay.txt", folder / "essay.txt")
    notes = {name: folder / f"{name}.md" for name in ("lost", "doubled", "stuck", "deleted", "kept")}
    for path in notes.values():
        path.write_text(unique_text(3))
    done = own.dropvec("ingest", str(folder), "--wait")
    assert done.returncode == 0, done.stderr
    code, report = check(own, folder)
    assert (code, report["clean"]) == (0, True), report
    state = StateStore.from_url(own.settings.redis_url)
    # When, behind dropvec's back, rows are deleted from and added to Milvus,
    client = MilvusClient(uri=own.settings.milvus_uri)
    collection = own.settings.collection
    essay_rows = sorted(rows_of(client, collection, folder / "essay.txt"), key=lambda r: r["chunk_index"])
    client.delete(collection, ids=[r["id"] for r in essay_rows[5:8]])  # 3 chunks of the essay
    lost = rows_of(client, collection, notes["lost"])
    client.delete(collection, ids=[r["id"] for r in lost])  # every chunk of a note
    doubled = rows_of(client, collection, notes["doubled"])[0]
    extra = {**doubled, "id": uuid.uuid4().hex}  # a row of its version that is not its chunk
    ghost = {**doubled, "id": uuid.uuid4().hex, "doc_id": uuid.uuid4().hex[:32],
             "file_path": str(folder / "ghost.md")}  # rows of a file no one knows  # fmt: skip
    client.insert(collection, [extra, ghost])
    # the ledger shows a file queued that no task is for, a file is deleted with no watcher
    # running, and a new file is added
    stuck = doc_id_for(str(notes["stuck"]))
    state.r.hset(state.file_key(stuck), mapping={"status": "queued", "updated_at": time.time() - 3600})
    deleted_hashes = [r["embed_hash"] for r in rows_of(client, collection, notes["deleted"])]
    notes["deleted"].unlink()
    (folder / "new.md").write_text(unique_text(2))
    # Then check reports each of them, and exits 1
    code, report = check(own, folder)
    assert code == 1, report
    found = findings(report)
    assert found["missing"] == {"essay.txt", "lost.md"}
    assert found["extra"] == {"doubled.md"}
    assert found["orphans"] == {"ghost.md"}
    assert found["stuck"] == {"stuck.md"}
    assert found["gone"] == {"deleted.md"}
    assert found["unindexed"] == {"new.md"}
    assert "kept.md" not in set().union(*found.values())
    # And `check --repair` makes Milvus hold exactly the folder's chunks, each once
    lost_chunks = len(lost)
    new_chunks = sum(1 for key in expected(own, folder) if key[0].endswith("new.md"))
    result = own.dropvec("check", str(folder), "--repair", "--json", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    repaired = json.loads(result.stdout)
    assert repaired["after"]["clean"], repaired
    assert stored(own, folder) == expected(own, folder)
    # embedding only the chunks whose vectors were nowhere: the essay's 3, the lost note's and
    # the new file's; the other chunks of the files indexed again are reused
    assert repaired["repaired"]["chunks_embedded"] == 3 + lost_chunks + new_chunks, repaired
    assert repaired["repaired"]["chunks_reused"] > len(essay_rows) - 3, repaired
    assert repaired["repaired"]["rows_deleted"] >= 1
    # and the stored embed hashes no longer list the deleted file's vectors
    assert deleted_hashes and not any(state.hashes.may_be_stored(collection, deleted_hashes))
    # and BM25's statistics count exactly the rows stored (the ghost's, which no write counted, gone)
    texts = client.query(collection, filter="", output_fields=["text"], limit=16_384)
    rows = counted(r["text"] for r in texts)
    assert state.terms.totals(collection) == (rows.docs, rows.tokens)
    assert state.terms.document_frequencies(collection, rows.df) == (rows.docs, dict(rows.df))
    code, report = check(own, folder)
    assert (code, report["clean"]) == (0, True), report
    client.close()


def test_check_exits_2_when_a_service_is_down(own: Stack) -> None:
    env = {"DROPVEC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = own.dropvec("check", str(own.root), env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Redis" in result.stderr


def wipe_redis(root: Path) -> None:
    for data in ("appendonlydir", "dump.rdb"):
        shutil.rmtree(root / ".dropvec" / "redis" / data, ignore_errors=True)
        (root / ".dropvec" / "redis" / data).unlink(missing_ok=True)


def test_up_catches_up_after_redis_and_then_milvus_lost_their_data(tmp_path: Path) -> None:
    redis_url, milvus_uri = f"redis://127.0.0.1:{free_port()}/0", f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DROPVEC_REDIS_URL": redis_url, "DROPVEC_MILVUS_URI": milvus_uri,
           "DROPVEC_SERVE_PORT": "0"}  # fmt: skip
    log, inbox = tmp_path / "up.log", tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SEED / "paul_graham_essay.txt", inbox / "essay.txt")
    for i in range(3):
        (inbox / f"note-{i}.md").write_text(unique_text(3))
    files = sorted(inbox.iterdir())

    def indexed() -> bool:
        state = StateStore.from_url(redis_url)
        return all(state.get_file(doc_id_for(str(p))).get("status") == "indexed" for p in files)

    def run_check() -> tuple[int, dict]:
        result = subprocess.run([sys.executable, "-m", "dropvec", "check", "--json"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        return result.returncode, json.loads(result.stdout)

    # Given the folder indexed by `dropvec up`
    proc = start_up(tmp_path, env, log)
    try:
        wait_for(indexed, 300, "the folder to be indexed")
        chunks = sum(
            int(StateStore.from_url(redis_url).get_file(doc_id_for(str(p)))["chunks_total"]) for p in files
        )
    finally:
        stop_up(proc)
    # When Redis loses its data before the next start
    wipe_redis(tmp_path)
    offset = log.stat().st_size
    proc = start_up(tmp_path, env, log)
    try:
        # Then the ledger is rebuilt from Milvus and the folder, and nothing is embedded again
        wait_for(indexed, 300, "the folder to be indexed again")
        assert "rebuilding the ledger" in log.read_text()[offset:]
        totals = StateStore.from_url(redis_url).counters.totals()
        assert totals.get("chunks:embedded", 0) == 0, totals
        code, report = run_check()
        assert (code, report["clean"]) == (0, True), report
    finally:
        stop_up(proc)
    # When Milvus loses its data before the next start
    shutil.rmtree(tmp_path / ".dropvec" / "milvus-lite")
    offset = log.stat().st_size
    proc = start_up(tmp_path, env, log)
    try:
        # Then it is said in one line, and the folder is indexed again, and check is clean
        wait_for(lambda: "Milvus holds none" in log.read_text()[offset:], 120, "the loss to be noticed")
        wait_for(lambda: run_check()[0] == 0, 600, "check to be clean")
        code, report = run_check()
        assert report["rows"] == chunks
    finally:
        stop_up(proc)


def test_the_tasks_in_the_queue_are_what_check_counts_as_alive(own: Stack) -> None:
    # Given tasks sent as the producer sends them, to a Redis database no worker reads
    from dropvec.config.messages import EMBED_TASK, Chunk, EmbedTask, RemoveTask
    from dropvec.workers.app import create_app, publishing, send_removal

    settings = own.settings.model_copy(update={"redis_url": own.settings.redis_url.rsplit("/", 1)[0] + "/1"})
    app = create_app(settings)
    task = EmbedTask(run_id="r", doc_id="d" * 32, generation=7, file_path="/x.md", task_index=0,
                     chunks=[Chunk(id="c", index=0, text="t")])  # fmt: skip
    with publishing(app) as send:
        send(EMBED_TASK, task.model_dump(mode="json"))
    send_removal(app, RemoveTask(doc_id="e" * 32, file_path="/y.md", below_generation=5))
    # Then the ledger sees which file version and which removal they are for
    alive = StateStore.from_url(settings.redis_url).tasks_alive()
    assert alive.versions == {("d" * 32, 7)}
    assert alive.removals == {"e" * 32: 5}


def test_a_watch_repairs_what_its_periodic_checks_keep_finding(own: Stack) -> None:
    # Given a watched folder in sync, checked every 2 s
    from tests.integration.sync_check import Watcher, wait_in_sync

    folder = own.root / "healed"
    folder.mkdir()
    (folder / "note.md").write_text(unique_text(3))
    quick = Stack(own.settings.model_copy(update={"check_interval": 2}), own.root, own.services)
    watcher = Watcher(quick, folder)
    watcher.start()
    try:
        wait_in_sync(own, folder)
        # When rows of a file no one knows appear (as a removal lost with a killed worker leaves)
        client = MilvusClient(uri=own.settings.milvus_uri)
        row = rows_of(client, own.settings.collection, folder / "note.md")[0]
        client.insert(own.settings.collection, [{**row, "id": uuid.uuid4().hex, "doc_id": uuid.uuid4().hex,
                                                 "file_path": str(folder / "lost.md")}])  # fmt: skip
        client.close()
        # Then the watch finds them, twice, checks in full, and deletes them
        wait_in_sync(own, folder, timeout=120)
        assert "repaired:" in watcher.log.read_text()
        code, report = check(own, folder)
        assert (code, report["clean"]) == (0, True), report
    finally:
        watcher.stop()
