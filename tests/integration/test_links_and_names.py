"""Names that are not UTF-8 and links out of the folder, through every way into the producer: the
first reconciliation and the watch events of a running ``dropvec up``, ``ingest PATH`` and
``retry-failed``. Each ends skipped with its reason, nothing behind a link is ever stored, and the
pipeline goes on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.stack import free_port
from tests.integration.conftest import Stack, wait_for
from tests.integration.test_up import start_up, stop_up

pytestmark = pytest.mark.integration

#: Text found only in files outside every inbox: no stored chunk may ever hold it.
SECRET = "outside-the-folder-7f3a"


def outside_folder(root: Path) -> Path:
    folder = root / "outside"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for name in ("secret.txt", "sub/deeper.md"):
        (folder / name).write_text(f"A private note, {SECRET}. It must stay where it is.\n")
    return folder


def bad_name(folder: Path, stem: bytes) -> Path:
    path = Path(os.fsdecode(os.fsencode(folder) + b"/" + stem + b"_\xe9\xff.txt"))
    path.write_text("A file copied from an old archive, its name in Latin-1 bytes.\n")
    return path


def rows(milvus_uri: str, collection: str) -> list[dict]:
    client = MilvusClient(uri=milvus_uri)
    try:
        if not client.has_collection(collection):
            return []
        return client.query(
            collection, filter='file_path != ""', output_fields=["file_path", "text"], limit=16384,
            consistency_level="Strong",
        )  # fmt: skip
    finally:
        client.close()


def assert_nothing_outside_stored(milvus_uri: str, collection: str, outside: Path) -> None:
    stored = rows(milvus_uri, collection)
    assert not [r for r in stored if SECRET in r["text"]], "a file behind a link was stored"
    through = [r for r in stored if "link" in Path(r["file_path"]).parts[:-1]]
    assert not through, "a path through a link was stored"
    assert not [r for r in stored if r["file_path"].startswith(str(outside))]


def test_up_skips_bad_names_and_links_at_start_and_while_watching(tmp_path: Path) -> None:
    # Given an inbox that already holds a badly named file and links out of it (a folder link at
    # the top, another one deep down, and a file link), and a folder outside it
    outside = outside_folder(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "a" / "b").mkdir(parents=True)
    bad_name(inbox, b"old")
    (inbox / "link").symlink_to(outside, target_is_directory=True)
    (inbox / "a" / "b" / "link").symlink_to(outside, target_is_directory=True)
    (inbox / "a" / "file-link.txt").symlink_to(outside / "secret.txt")
    (inbox / "a" / "b" / "real.txt").write_text("A real note of the inbox, about otters.\n")
    env = {
        **os.environ,
        "DROPVEC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DROPVEC_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "DROPVEC_SETTLE_SECONDS": "0.3",
    }
    log = tmp_path / "up.log"
    # When dropvec up starts on it (its first reconciliation)
    proc = start_up(tmp_path, env, log)
    try:
        state = StateStore.from_url(env["DROPVEC_REDIS_URL"])
        real = inbox / "a" / "b" / "real.txt"
        wait_for(lambda: state.get_file(doc_id_for(str(real))).get("status") == "indexed", 300, "real.txt")
        # Then the bad name and every link are skipped with their reasons
        text = log.read_text(errors="replace")
        assert "old_\ufffd\ufffd.txt: the file name is not valid UTF-8" in text, text
        for link in (inbox / "link", inbox / "a" / "b" / "link", inbox / "a" / "file-link.txt"):
            record = state.get_file(doc_id_for(str(link)))
            assert record.get("status") == "skipped" and "symbolic link" in record["reason"], (link, record)
        # When, while it watches, another bad name, another folder link and a normal file arrive
        bad_name(inbox, b"new")
        (inbox / "a" / "new-link").symlink_to(outside, target_is_directory=True)
        shutil.copytree(outside, inbox / "copied")  # a real copy of the folder is the user's to index
        after = inbox / "after.txt"
        after.write_text("Dropped after the bad name: it must be indexed all the same.\n")
        # Then up stays up, the normal file and the copy are indexed, the new ones are skipped
        wait_for(lambda: state.get_file(doc_id_for(str(after))).get("status") == "indexed", 120, "after.txt")
        copied = inbox / "copied" / "secret.txt"
        wait_for(lambda: state.get_file(doc_id_for(str(copied))).get("status") == "indexed", 120, "the copy")
        skipped_new = "new_\ufffd\ufffd.txt: the file name is not valid UTF-8"
        wait_for(lambda: skipped_new in log.read_text(errors="replace"), 60, "the new bad name to be skipped")
        new_link = state.get_file(doc_id_for(str(inbox / "a" / "new-link")))
        assert new_link.get("status") == "skipped" and "symbolic link" in new_link["reason"], new_link
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert "Traceback" not in log.read_text(errors="replace")
        # And when the inbox is removed and made again, the next file dropped is indexed
        shutil.rmtree(inbox)
        inbox.mkdir()
        again = inbox / "again.txt"
        again.write_text("The inbox was removed and made again.\n")
        wait_for(lambda: state.get_file(doc_id_for(str(again))).get("status") == "indexed", 120, "again.txt")
        # And nothing that lay behind a link was ever stored: only the copy holds the secret text
        stored = rows(env["DROPVEC_MILVUS_URI"], "dropvec")
        behind = [r["file_path"] for r in stored if SECRET in r["text"]]
        assert behind == [] or all(p.startswith(str(inbox / "copied")) for p in behind), behind
        assert not [
            r for r in stored if {"link", "new-link", "file-link.txt"} & set(Path(r["file_path"]).parts)
        ]
    finally:
        stop_up(proc)


def test_ingest_skips_links_out_of_the_folder_at_any_depth(stack: Stack) -> None:
    # Given a folder with links to a folder outside it, at the top and deep down, and a real file
    outside = outside_folder(stack.root / "links-ingest")
    folder = stack.root / "links-ingest" / "docs"
    (folder / "x" / "y").mkdir(parents=True)
    (folder / "link").symlink_to(outside, target_is_directory=True)
    (folder / "x" / "y" / "link").symlink_to(outside / "sub", target_is_directory=True)
    (folder / "x" / "real.txt").write_text("A real note, about badgers.\n")
    # When the folder is ingested
    result = stack.dropvec("ingest", str(folder), "--wait", "--timeout", "120")
    # Then the real file is indexed and both links are reported skipped, with the reason
    assert result.returncode == 0, result.stderr
    assert "indexed 1 file(s)" in result.stdout, result.stdout
    for link in (folder / "link", folder / "x" / "y" / "link"):
        assert f"skipped {link}: a symbolic link" in result.stderr, result.stderr
    # And naming the link itself, or the folder's inbox-relative path through it, reads nothing either
    named = stack.dropvec("ingest", str(folder / "link"))
    assert f"skipped {folder / 'link'}: a symbolic link" in named.stderr, named.stderr
    inbox = stack.settings.inbox.absolute()
    (inbox / "sub").mkdir(parents=True, exist_ok=True)
    (inbox / "sub" / "link").symlink_to(outside, target_is_directory=True)
    through = inbox / "sub" / "link" / "secret.txt"
    named = stack.dropvec("ingest", str(through))
    assert f"skipped {through}: reached through the symbolic link {inbox / 'sub' / 'link'}" in named.stderr
    assert_nothing_outside_stored(stack.settings.milvus_uri, stack.settings.collection, outside)


def test_retry_failed_reads_nothing_through_a_folder_made_a_link(stack: Stack) -> None:
    # Given a file of the inbox that failed (binary data in a .txt)
    inbox = stack.settings.inbox.absolute()
    sub = inbox / "retry-sub"
    sub.mkdir(parents=True)
    broken = sub / "secret.txt"
    broken.write_bytes(bytes(4096))
    assert stack.dropvec("ingest", str(broken)).returncode == 1
    # When its folder is replaced by a link to a folder outside, where a readable file of that name lies
    outside = outside_folder(stack.root / "links-retry")
    shutil.rmtree(sub)
    sub.symlink_to(outside, target_is_directory=True)
    result = stack.dropvec("retry-failed", "--wait", "--timeout", "120")
    # Then the retry skips it, naming the link, and stores nothing of the outside file
    assert f"skipped {broken}: reached through the symbolic link {sub}" in result.stderr, result.stderr
    assert_nothing_outside_stored(stack.settings.milvus_uri, stack.settings.collection, outside)


@pytest.mark.parametrize("command", ["ingest", "watch"])
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_producer_waiting_on_a_full_queue_stops_on_the_first_signal(
    tmp_path: Path, command: str, signame: str
) -> None:
    import signal

    from dropvec.config.settings import Settings
    from dropvec.stack import start_redis

    # Given a Redis with no worker at all, and a queue that holds one task at most
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(_env_file=None, redis_url=redis_url)  # type: ignore[call-arg]
    redis_service = start_redis(settings, tmp_path / "data")
    assert redis_service is not None
    try:
        folder = tmp_path / "inbox"
        folder.mkdir()
        (folder / "long.txt").write_text(
            "\n\n".join(f"Paragraph {i} of a long file." * 8 for i in range(400))
        )
        env = {
            **os.environ, "DROPVEC_REDIS_URL": redis_url, "DROPVEC_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
            "DROPVEC_MAX_QUEUE_DEPTH": "1", "DROPVEC_CHUNKS_PER_TASK": "4", "DROPVEC_METRICS_PORT": "0",
        }  # fmt: skip
        log = tmp_path / "producer.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dropvec", command, str(folder)], env=env, cwd=tmp_path,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        # When it waits for room in the full queue, and is sent one signal
        wait_for(lambda: b"queue full" in log.read_bytes() or proc.poll() is not None, 120, "a full queue")
        assert proc.poll() is None, log.read_text()
        proc.send_signal(getattr(signal, signame))
        # Then it ends within a few seconds, with the usual exit code
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{command} ignored {signame} while the queue was full: {log.read_text()[-2000:]}")
        usual = {"ingest": 130, "watch": 0}[command]  # ingest: stopped, files not read
        assert code == usual, log.read_text()[-2000:]
        assert "Traceback" not in log.read_text()
    finally:
        redis_service.stop()
