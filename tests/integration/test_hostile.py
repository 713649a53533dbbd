"""Hostile input: every file ends indexed, skipped or failed with a one-line reason, nothing hangs,
and no empty or garbage chunk reaches Milvus."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pymilvus import MilvusClient
from pypdf import PdfWriter

from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from tests.corpus import PUBLIC
from tests.integration.conftest import Stack, wait_for

pytestmark = pytest.mark.integration

SENTENCE = "The otter floats on its back and cracks a shell on its chest. "


def pdf(blank_pages: int = 1, password: str = "") -> bytes:
    writer = PdfWriter()
    for _ in range(blank_pages):
        writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def zip_bomb(inflated_mb: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z, z.open("word/document.xml", "w") as f:
        for _ in range(inflated_mb):
            f.write(bytes(2**20))
    return out.getvalue()


def make_hostile_folder(folder: Path) -> dict[str, tuple[str, str]]:
    """Write the hostile files; return {relative name: (expected status, a word of the reason)}."""
    rng = random.Random(7)
    attention = (PUBLIC / "pdf" / "arxiv" / "attention_is_all_you_need_1706.03762v7.pdf").read_bytes()
    files: dict[str, tuple[bytes, str, str]] = {
        "empty.txt": (b"", "skipped", "no text"),
        "blank.md": (b"  \n\t\n\n   ", "skipped", "no text"),
        "random.txt": (rng.randbytes(4096), "failed", "binary"),
        "photo.pdf": (
            b"\x89PNG\r\n\x1a\n" + rng.randbytes(2048),
            "failed",
            "cannot read png",
        ),  # (its content)
        "corrupt.pdf": (b"%PDF-1.4\n" + rng.randbytes(4096), "failed", "cannot read pdf"),
        "truncated.pdf": (attention[: len(attention) // 3], "failed", "cannot read pdf"),
        "locked.pdf": (pdf(password="secret"), "failed", "cannot read pdf"),
        "blank-pages.pdf": (pdf(blank_pages=2), "skipped", "no text"),
        "notzip.docx": (b"hello, I am not a zip", "failed", "not a zip archive"),
        "bomb.docx": (zip_bomb(40), "failed", "would inflate"),
        "latin1.txt": (("Café crème brûlée à la façade. " * 30).encode("latin-1"), "indexed", ""),
        "utf16.txt": (("Grüße aus Köln, Straße. " * 30).encode("utf-16"), "indexed", ""),
        "bom.md": (("# Título\n\n" + "Ünïcödé with a BOM. " * 30).encode("utf-8-sig"), "indexed", ""),
        "mixed.txt": (
            ("Naïve UTF-8 line. " * 20).encode() + ("Résumé latin-1. " * 20).encode("latin-1"),
            "indexed",
            "",
        ),  # fmt: skip
        "nul.txt": (((SENTENCE + "\x00") * 30).encode(), "indexed", ""),
        "oneline.txt": ((SENTENCE * 80_000).encode(), "indexed", ""),  # 5 MB, no newline
        "with space.txt": (SENTENCE.encode() * 3, "indexed", ""),
        "new\nline.txt": (SENTENCE.encode() * 4, "indexed", ""),
        "-dash.txt": (SENTENCE.encode() * 5, "indexed", ""),
        "folder.txt/inner.md": (SENTENCE.encode() * 6, "indexed", ""),
        "/".join(["n"] * 100) + "/deep.txt": (SENTENCE.encode() * 7, "indexed", ""),
    }
    expected = {}
    for name, (data, status, reason) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        expected[name] = (status, reason)
    with (folder / "huge.txt").open("wb") as f:  # sparse: 200 MB on paper, nothing on disk
        f.truncate(200 * 2**20)
    expected["huge.txt"] = ("skipped", "over the 100 MB limit")
    os.mkfifo(folder / "pipe.txt")
    expected["pipe.txt"] = ("skipped", "not a regular file")
    (folder / "outside.txt").symlink_to("/etc/hostname")
    expected["outside.txt"] = ("skipped", "symbolic link")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    expected["loop"] = ("skipped", "symbolic link")
    return expected


def test_hostile_files_each_end_with_a_reason_and_no_garbage_is_stored(stack: Stack) -> None:
    # Given a folder of every kind of bad input, and a file whose name is not UTF-8
    folder = stack.root / "hostile"
    folder.mkdir()
    expected = make_hostile_folder(folder)
    bad_name = os.fsdecode(os.fsencode(folder) + b"/bad\xffname.txt")
    Path(bad_name).write_bytes(SENTENCE.encode())
    # When the folder is ingested
    result = stack.dropvec("ingest", str(folder), "--wait", "--timeout", "600")
    # Then the command ends (nothing hangs on the FIFO or loops on the symlink), with failures
    assert result.returncode == 1, result.stderr
    assert "bad\ufffdname.txt: the file name is not valid UTF-8" in result.stderr
    # and every file has its state, with a reason when it was not indexed
    state = StateStore.from_url(stack.settings.redis_url)
    for name, (status, reason) in expected.items():
        record = state.get_file(doc_id_for(str(folder / name)))
        assert record.get("status") == status, (name, record)
        assert reason in record["reason"] and "\n" not in record["reason"], (name, record["reason"])
    # and what reached Milvus is text: no empty chunk, no NUL, no BOM, the words decoded right
    client = MilvusClient(uri=stack.settings.milvus_uri)
    rows = client.query(
        stack.settings.collection,
        filter=f'file_path like "{folder}/%"',
        output_fields=["file_name", "text"],
        limit=16384,
        consistency_level="Strong",
    )
    client.close()
    assert rows
    assert all(r["text"].strip() and "\x00" not in r["text"] and "\ufeff" not in r["text"] for r in rows)
    text_of: dict[str, str] = {}
    for r in rows:  # (in no particular order)
        text_of[r["file_name"]] = text_of.get(r["file_name"], "") + r["text"]
    assert "Café crème" in text_of["latin1.txt"]
    assert "Grüße aus Köln" in text_of["utf16.txt"]
    assert "Título" in text_of["bom.md"]
    assert sum(r["file_name"] == "oneline.txt" for r in rows) > 1000
    assert int(state.get_file(doc_id_for(str(folder / "oneline.txt")))["chunks_embedded"]) < 50


def big_text(path: Path, megabytes: int) -> None:
    """Text that streams in several blocks; its chunks repeat, so their vectors are reused."""
    path.write_text(("\n\n".join([SENTENCE * 4] * 1000) + "\n\n") * megabytes * 4)


def rows_of(stack: Stack, path: Path) -> int:
    client = MilvusClient(uri=stack.settings.milvus_uri)
    try:
        rows = client.query(
            stack.settings.collection, filter=f'file_path == "{path}"', output_fields=["id"],
            limit=16384, consistency_level="Strong",
        )  # fmt: skip
    finally:
        client.close()
    return len(rows)


@pytest.mark.parametrize("change", ["deleted", "appended to"])
def test_a_file_deleted_or_changed_while_it_is_read_leaves_nothing_behind(stack: Stack, change: str) -> None:
    # Given a large text file being read and queued by the producer
    folder = stack.root / f"while-read-{change.split()[0]}"
    folder.mkdir()
    path = folder / "big.txt"
    big_text(path, 12)
    producer = subprocess.Popen(
        [sys.executable, "-m", "dropvec", "ingest", str(path)], env=stack.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    state = StateStore.from_url(stack.settings.redis_url)
    started = lambda: state.get_file(doc_id_for(str(path))).get("status") == "queued"  # noqa: E731
    wait_for(started, 120, "its first task", 0.05)
    # When the file is deleted (or written to) before it has been read to its end
    if change == "deleted":
        path.unlink()
    else:
        with path.open("a") as f:
            f.write("One more line.\n")
    stdout, stderr = producer.communicate(timeout=300)
    # Then the producer stops sending it, says why, and none of its chunks stays in Milvus
    record = state.get_file(doc_id_for(str(path)))
    if change == "deleted":
        assert "removed 1" in stdout and not record, (stdout, stderr, record)
    else:
        assert f"skipped {path}: changed while it was read" in stderr, (stdout, stderr)
        assert record["status"] == "skipped"
    wait_for(lambda: rows_of(stack, path) == 0, 120, "its chunks to be removed", 1)


def test_a_file_held_open_by_its_writer_is_skipped_until_it_is_closed(stack: Stack) -> None:
    # Given a file that a program is still writing, and keeps open
    path = stack.root / "growing.txt"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
    # When it is ingested, it is skipped with the reason
    first = stack.dropvec("ingest", str(path))
    assert f"skipped {path}: open for writing by another process" in first.stderr, first.stderr
    # Once its writer has closed it, it is indexed whole
    writer.communicate("done\n", timeout=30)
    second = stack.dropvec("ingest", str(path), "--wait", "--timeout", "120")
    assert second.returncode == 0, second.stderr
    record = StateStore.from_url(stack.settings.redis_url).get_file(doc_id_for(str(path)))
    assert record["status"] == "indexed"


#: Writes a file in two parts, keeping it open in between until told to finish.
WRITER = """
import sys
with open(sys.argv[1], "w") as f:
    f.write("The first part, written before the ingest. " * 20)
    f.flush()
    print("open", flush=True)
    sys.stdin.readline()
    f.write("The second part, written after. " * 20)
"""


def test_messages_that_are_not_json_or_past_the_caps_are_refused_and_the_worker_goes_on(
    stack: Stack,
) -> None:
    from dropvec.config.messages import EMBED_TASK, MAX_CHUNKS_PER_TASK
    from dropvec.config.settings import QUEUE
    from dropvec.workers.app import create_app

    app = create_app(stack.settings)
    chunk = {"id": "c", "index": 0, "text": "hello"}
    task = {"run_id": "r", "doc_id": "d", "generation": 1, "file_path": "/x", "task_index": 0}
    logs = stack.root / "logs"
    before = {p: p.stat().st_size for p in logs.glob("worker-*.log")}
    # When a pickled message and a message with too many chunks are put on the queue
    app.send_task(EMBED_TASK, args=[{**task, "chunks": [chunk]}], queue=QUEUE, serializer="pickle")
    app.send_task(EMBED_TASK, args=[{**task, "chunks": [chunk] * (MAX_CHUNKS_PER_TASK + 1)}], queue=QUEUE)

    # Then both are refused, each with a line in a worker's log
    def refused() -> bool:
        new = "".join(p.read_text(errors="replace")[before.get(p, 0) :] for p in logs.glob("worker-*.log"))
        return "ContentDisallowed" in new and "undecodable message" in new

    wait_for(refused, 60, "both messages to be refused")
    # and the workers go on working
    path = stack.root / "after-bad-messages.txt"
    path.write_text(SENTENCE * 3)
    result = stack.dropvec("ingest", str(path), "--wait", "--timeout", "120")
    assert result.returncode == 0 and "indexed 1 file(s)" in result.stdout, result.stderr
