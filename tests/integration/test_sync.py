"""The watched folder stays in sync: a real ``dropvec watch`` process, real Redis, Milvus, workers.

After every change, Milvus must hold exactly the chunks of the files present, once each: the
expected chunks are computed here from the files on disk with the producer's pure chunker, and
compared with every row stored under the folder.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus import SEED
from tests.integration.conftest import Stack, wait_for
from tests.integration.sync_check import Watcher, record, stored, unique_text, wait_in_sync, wait_settled

pytestmark = pytest.mark.integration

ESSAY = SEED / "paul_graham_essay.txt"


@pytest.fixture(scope="module")
def watcher(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watcher]:
    folder = tmp_path_factory.mktemp("sync") / "inbox"
    folder.mkdir()
    w = Watcher(stack, folder)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def here(watcher: Watcher, request: pytest.FixtureRequest) -> Path:
    """A folder of this test's own inside the watched one."""
    folder = watcher.folder / request.node.name
    folder.mkdir()
    return folder


def test_a_dropped_file_is_indexed_and_temporary_files_are_ignored(stack: Stack, here: Path) -> None:
    # When a file is dropped with the litter editors and downloaders leave beside it
    (here / "notes.md").write_text(unique_text())
    for name in ("~$notes.docx", ".~lock.notes.md#", "big.iso.part", "x.tmp", ".hidden.md"):
        (here / name).write_text(unique_text())
    (here / ".git").mkdir()
    (here / ".git" / "README.md").write_text(unique_text())
    # Then only the real file is stored, embedded, and indexed
    wait_in_sync(stack, here)
    assert {Path(p).name for p, _, _ in stored(stack, here)} == {"notes.md"}
    wait_for(lambda: record(stack, here / "notes.md").get("status") == "indexed", 30, "indexed")
    f = record(stack, here / "notes.md")
    assert int(f["chunks_embedded"]) == int(f["chunks_total"]) > 0


def test_a_file_written_slowly_in_three_parts_is_ingested_once_whole(
    stack: Stack, here: Path, watcher: Watcher
) -> None:
    # Given a writer that keeps the file open and pauses well past the settle time between parts
    path = here / "slow.txt"
    parts = [unique_text(2) for _ in range(3)]
    pause = 4 * stack.settings.settle_seconds + 1
    with path.open("w") as f:
        for part in parts:
            f.write(part + "\n\n")
            f.flush()
            time.sleep(pause)
            # Then nothing of it is read while it is still being written
            assert not stored(stack, here)
    # And once closed it is ingested once, with all three parts
    wait_in_sync(stack, here)
    texts = " ".join(text for _, _, text in stored(stack, here))
    assert all(part.split(".")[0] in texts for part in parts)
    assert watcher.lines("queued", path) == 1


def test_editing_one_paragraph_embeds_only_the_changed_chunks(stack: Stack, here: Path) -> None:
    # Given the essay, indexed
    path = here / "essay.txt"
    shutil.copy(ESSAY, path)
    wait_in_sync(stack, here)
    before = record(stack, path)
    # When one paragraph in the middle gets a new sentence
    paragraphs = path.read_text().split("\n\n")
    paragraphs[len(paragraphs) // 2] += f" A sentence nobody wrote before, {uuid.uuid4().hex}."
    path.write_text("\n\n".join(paragraphs))
    # Then the new version replaces the old, and at most three chunks were embedded for it
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, path)["status"] == "indexed", 30, "indexed")
    after = record(stack, path)
    assert int(after["generation"]) > int(before["generation"])
    embedded, reused = int(after["chunks_embedded"]), int(after["chunks_reused"])
    assert 1 <= embedded <= 3
    assert embedded + reused == int(after["chunks_total"]) > 60


def test_a_renamed_file_and_a_file_moved_into_a_subfolder_are_not_embedded_again(
    stack: Stack, here: Path, watcher: Watcher
) -> None:
    # Given an indexed file
    (here / "a.md").write_text(unique_text())
    wait_in_sync(stack, here)
    # When it is renamed
    (here / "a.md").rename(here / "b.md")
    # Then its chunks are under the new name only, and nothing was embedded
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, here / "b.md").get("status") == "indexed", 30, "indexed")
    assert record(stack, here / "a.md") == {}
    assert record(stack, here / "b.md")["chunks_embedded"] == "0"
    assert watcher.lines("queued", here / "b.md") == 1
    # And the same when it is moved into a subfolder
    (here / "sub").mkdir()
    (here / "b.md").rename(here / "sub" / "b.md")
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, here / "sub" / "b.md").get("status") == "indexed", 30, "indexed")
    assert record(stack, here / "sub" / "b.md")["chunks_embedded"] == "0"


def test_deleting_a_file_or_a_folder_removes_their_chunks(stack: Stack, here: Path) -> None:
    # Given a file, and a folder of two files, indexed
    (here / "keep.md").write_text(unique_text())
    (here / "gone.md").write_text(unique_text())
    (here / "folder").mkdir()
    for name in ("x.md", "y.txt"):
        (here / "folder" / name).write_text(unique_text())
    wait_in_sync(stack, here)
    assert len({p for p, _, _ in stored(stack, here)}) == 4
    # When one file is deleted, then the folder
    (here / "gone.md").unlink()
    wait_in_sync(stack, here)
    shutil.rmtree(here / "folder")
    # Then only the file kept is left, in Milvus and in the state
    wait_in_sync(stack, here)
    assert {Path(p).name for p, _, _ in stored(stack, here)} == {"keep.md"}
    assert record(stack, here / "folder" / "x.md") == {}


def test_the_same_content_under_two_names_is_embedded_once(stack: Stack, here: Path) -> None:
    (here / "one.md").write_text(unique_text())
    wait_in_sync(stack, here)
    shutil.copy(here / "one.md", here / "two.md")
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, here / "two.md").get("status") == "indexed", 30, "indexed")
    two = record(stack, here / "two.md")
    assert (two["chunks_embedded"], two["chunks_reused"]) == ("0", two["chunks_total"])


def test_changes_made_while_dropvec_was_down_are_reconciled_on_start(
    stack: Stack, here: Path, watcher: Watcher
) -> None:
    # Given four indexed files
    for name in ("same.md", "changed.md", "deleted.md", "moved.md"):
        (here / name).write_text(unique_text())
    wait_in_sync(stack, here)
    untouched = record(stack, here / "same.md")
    # When dropvec is stopped, and files are added, changed, deleted and moved meanwhile
    watcher.stop()
    try:
        (here / "added.md").write_text(unique_text())
        (here / "changed.md").write_text(unique_text())
        (here / "deleted.md").unlink()
        (here / "moved.md").rename(here / "moved-here.md")
    finally:
        watcher.start()
    # Then all of it is caught up, without touching the file that did not change
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, here / "moved-here.md").get("status") == "indexed", 30, "indexed")
    assert record(stack, here / "same.md") == untouched
    assert record(stack, here / "moved-here.md")["chunks_embedded"] == "0"
    assert record(stack, here / "deleted.md") == {}


def test_status_json_shows_per_file_state_with_files(stack: Stack, here: Path) -> None:
    (here / "s.md").write_text(unique_text())
    (here / "bad.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    wait_in_sync(stack, here)
    wait_for(lambda: record(stack, here / "bad.pdf").get("status") == "failed", 60, "the bad pdf to fail")
    result = stack.dropvec("status", "--json", "--files")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    files = {f["path"]: f for f in info["file_states"]}
    assert files[str(here / "s.md")]["status"] == "indexed"
    assert files[str(here / "bad.pdf")]["status"] == "failed"
    assert files[str(here / "bad.pdf")]["reason"].startswith("cannot read pdf: PdfiumError")
    assert info["files"]["failed"] >= 1 and info["files"]["indexed"] >= 1
    assert any(f["path"] == str(here / "bad.pdf") for f in info["latest_failures"])
    assert {"embedded", "reused"} <= set(info["chunks_per_second"])


def test_a_burst_of_hundreds_of_files_with_a_rename_and_a_delete_among_them_ends_in_sync(
    stack: Stack, here: Path, watcher: Watcher
) -> None:
    # When 300 files arrive at once, and one is renamed and another deleted before they settle
    for i in range(300):
        (here / f"note-{i}.md").write_text(unique_text(1))
    (here / "note-0.md").rename(here / "renamed.md")
    (here / "note-1.md").unlink()
    # Then the folder ends exactly in the index, each file once, none left in progress
    wait_settled(stack, here, timeout=600)
    stored_paths = {Path(p).name for p, _, _ in stored(stack, here)}
    assert len(stored_paths) == 299 and "renamed.md" in stored_paths and "note-1.md" not in stored_paths
    # and the watcher is still alive
    assert watcher.proc is not None and watcher.proc.poll() is None
