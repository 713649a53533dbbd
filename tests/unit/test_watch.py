"""The watcher against a real file system, with the producer replaced by a list of what it was
offered: it survives names it cannot decode, links, events for paths already gone and a watched
folder that is removed and made again."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropvec.producer.files import expand, link_on_path
from dropvec.producer.watch import watch_folder
from tests.integration.conftest import wait_for


class Offered:
    """``watch_folder`` running in a thread; every batch it passes on is kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.batches: list[tuple[list[Path], list[Path]]] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        def on_change(settled: list[Path], deleted: list[Path]) -> bool:
            self.batches.append((settled, deleted))
            return True

        def on_ready() -> bool:
            self.ready.set()
            return True

        try:
            watch_folder(self.folder, on_change, self.stop, settle_seconds=0.1, on_ready=on_ready)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def settled(self) -> set[Path]:
        return {p for settled, _ in self.batches for p in settled}

    def deleted(self) -> set[Path]:
        return {p for _, deleted in self.batches for p in deleted}

    def alive(self) -> bool:
        return self.thread.is_alive() and self.error is None


@pytest.fixture
def offered(tmp_path: Path) -> Iterator[Offered]:
    folder = tmp_path / "inbox"
    folder.mkdir()
    watcher = Offered(folder)
    watcher.thread.start()
    wait_for(watcher.ready.is_set, 30, "the watch to be in place", 0.05)
    yield watcher
    watcher.stop.set()
    watcher.thread.join(timeout=30)
    assert not watcher.thread.is_alive(), "the watcher did not stop"
    assert watcher.error is None, repr(watcher.error)


def test_a_name_that_is_not_utf8_keeps_the_watch_alive_and_the_folder_is_reconciled(offered: Offered) -> None:
    # When a file whose name is not valid UTF-8 is created in the watched folder
    bad = Path(os.fsdecode(os.fsencode(offered.folder) + b"/bad_\xe9\xff.txt"))
    bad.write_text("An old archive's file.")
    # Then the watch goes on, and the folder is offered whole (a reconciliation finds the file)
    wait_for(lambda: offered.folder in offered.settled() or offered.error, 30, "a reconciliation", 0.1)
    assert offered.alive(), repr(offered.error)
    # And a file dropped afterwards is offered as usual
    (offered.folder / "after.txt").write_text("Dropped after the bad name.")
    wait_for(lambda: offered.folder / "after.txt" in offered.settled() or offered.error, 30, "after.txt", 0.1)
    assert offered.alive(), repr(offered.error)


def test_a_link_to_a_folder_is_offered_as_the_link_and_never_walked(offered: Offered, tmp_path: Path) -> None:
    # Given a folder outside the inbox
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Nobody may read this.")
    # When a link to it is dropped into the inbox, and a file behind the link changes later
    link = offered.folder / "link"
    link.symlink_to(outside, target_is_directory=True)
    wait_for(lambda: link in offered.settled(), 30, "the link", 0.1)
    (outside / "later.txt").write_text("Nor this.")
    (offered.folder / "after.txt").write_text("A file of the inbox.")
    wait_for(lambda: offered.folder / "after.txt" in offered.settled(), 30, "after.txt", 0.1)
    # Then the link itself is offered (for the producer to skip), and nothing behind it
    assert not [p for p in offered.settled() if p.is_relative_to(link) and p != link], offered.batches
    assert offered.alive(), repr(offered.error)


def test_a_watched_folder_removed_and_made_again_is_watched_again(offered: Offered) -> None:
    # Given a file in the watched folder
    (offered.folder / "first.txt").write_text("Before the folder went.")
    wait_for(lambda: offered.folder / "first.txt" in offered.settled(), 30, "first.txt", 0.1)
    # When the folder is removed, and made again with a new file in it
    shutil.rmtree(offered.folder)
    wait_for(lambda: offered.folder / "first.txt" in offered.deleted() or offered.error, 30, "the deletion")
    offered.folder.mkdir()
    (offered.folder / "second.txt").write_text("After the folder came back.")
    # Then the new file is offered (directly, or by a reconciliation of the folder), and the watch lives
    seen = lambda: {offered.folder / "second.txt", offered.folder} & offered.settled() or offered.error  # noqa: E731
    wait_for(seen, 30, "the new folder's file", 0.1)
    assert offered.alive(), repr(offered.error)
    (offered.folder / "third.txt").write_text("Dropped later.")
    wait_for(lambda: offered.folder / "third.txt" in offered.settled() or offered.error, 30, "third.txt", 0.1)
    assert offered.alive(), repr(offered.error)


def test_events_for_paths_already_gone_are_dropped(offered: Offered) -> None:
    # When files and a folder come and go faster than they settle
    for i in range(20):
        folder = offered.folder / f"brief-{i}"
        folder.mkdir()
        (folder / "x.txt").write_text("here and gone")
        shutil.rmtree(folder)
    (offered.folder / "stays.txt").write_text("Still here.")
    wait_for(lambda: offered.folder / "stays.txt" in offered.settled(), 30, "stays.txt", 0.1)
    # Then nothing that is gone is offered as settled, and the watch goes on
    assert not [
        p for p in offered.settled() if p.name.startswith("brief-") or p.parent.name.startswith("brief")
    ]
    assert offered.alive(), repr(offered.error)


def test_a_folder_is_expanded_with_its_links_as_they_are(tmp_path: Path) -> None:
    # Given a folder holding links to a file and to a folder outside it, one of them deep
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    inbox = tmp_path / "inbox"
    (inbox / "a" / "b").mkdir(parents=True)
    (inbox / "a" / "b" / "real.txt").write_text("x")
    (inbox / "top").symlink_to(outside, target_is_directory=True)
    (inbox / "a" / "b" / "deep").symlink_to(outside, target_is_directory=True)
    (inbox / "a" / "file.txt").symlink_to(outside / "secret.txt")
    # Then the links are listed as they are (for the producer to skip), never what is behind them
    names = sorted(p.relative_to(inbox).as_posix() for p in expand([inbox]))
    assert names == ["a/b/deep", "a/b/real.txt", "a/file.txt", "top"]
    # And a link named itself is not walked either
    assert list(expand([inbox / "top"])) == [inbox / "top"]


def test_the_first_link_on_a_path_is_found_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "inbox" / "a").mkdir(parents=True)
    (tmp_path / "outside" / "x").mkdir(parents=True)
    (tmp_path / "inbox" / "a" / "l").symlink_to(tmp_path / "outside", target_is_directory=True)
    inbox = tmp_path / "inbox"
    assert link_on_path(inbox / "a" / "l" / "x" / "s.txt", inbox) == inbox / "a" / "l"
    assert link_on_path(inbox / "a" / "l", inbox) == inbox / "a" / "l"
    assert link_on_path(inbox / "a" / "real.txt", inbox) is None
    # a link above the folder (the user's own layout) is not this check's business
    (tmp_path / "alias").symlink_to(inbox, target_is_directory=True)
    assert link_on_path(tmp_path / "alias" / "a" / "real.txt", tmp_path / "alias") is None
