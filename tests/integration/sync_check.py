"""Checks shared by the integration tests: is Milvus exactly in line with a folder? And a
``dropvec watch`` process to drive."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from pymilvus import MilvusClient

from dropvec.config.errors import InputFileError
from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.producer.chunk import iter_chunks
from dropvec.producer.files import expand
from dropvec.producer.read import read_sections
from dropvec.producer.tokens import load_window
from dropvec.workers.store import ensure_loaded
from tests.integration.conftest import Stack, wait_for


def expected(stack: Stack, folder: Path) -> Counter[tuple[str, int, str]]:
    s = stack.settings
    chunks: Counter[tuple[str, int, str]] = Counter()
    for path in expand([folder], s.ignore):
        if path.is_symlink():
            continue  # links are not followed
        try:
            sections = read_sections(path)
        except InputFileError:
            continue  # a file that cannot be read has no chunks
        for c in iter_chunks(
            sections,
            doc_id=doc_id_for(str(path)),
            file_metadata={"file_path": str(path), "file_name": path.name},
            tokens=load_window(s.embed_model_path),
            chunk_size=s.chunk_size,
            chunk_overlap=s.chunk_overlap,
        ):
            chunks[(str(path), c.index, c.text)] += 1
    return chunks


def stored(stack: Stack, folder: Path) -> Counter[tuple[str, int, str]]:
    client = MilvusClient(uri=stack.settings.milvus_uri)
    try:
        ensure_loaded(client, stack.settings.collection)  # a restarted Milvus loads lazily
        it = client.query_iterator(
            stack.settings.collection,
            filter="",
            output_fields=["file_path", "chunk_index", "text"],
            batch_size=4000,
            consistency_level="Strong",
        )
        rows: Counter[tuple[str, int, str]] = Counter()
        while batch := it.next():
            for r in batch:
                if r["file_path"].startswith(f"{folder}/"):
                    rows[(r["file_path"], r["chunk_index"], r["text"])] += 1
        it.close()
        return rows
    finally:
        client.close()


def wait_in_sync(stack: Stack, folder: Path, timeout: float = 180) -> None:
    """Until Milvus holds exactly the chunks of the files under ``folder``, once each."""
    wait_for(lambda: stored(stack, folder) == expected(stack, folder), timeout, f"{folder.name} in sync", 1)


def record(stack: Stack, path: Path) -> dict[str, str]:
    return StateStore.from_url(stack.settings.redis_url).get_file(doc_id_for(str(path)))


def unique_text(paragraphs: int = 3) -> str:
    """Text no other test has, so its chunks must be embedded (not reused)."""
    token = uuid.uuid4().hex
    return "\n\n".join(
        f"Paragraph {i} about {token}. It has a few sentences. " * 3 for i in range(paragraphs)
    )


def in_progress(stack: Stack, folder: Path) -> list[str]:
    """Files under ``folder`` still queued or being indexed."""
    state = StateStore.from_url(stack.settings.redis_url)
    return [
        path
        for path in state.paths_under(str(folder))
        if state.get_file(doc_id_for(path)).get("status") in ("queued", "indexing")
    ]


def wait_settled(stack: Stack, folder: Path, timeout: float = 300) -> None:
    """Until Milvus is in line with ``folder`` and none of its files is left in progress."""
    wait_in_sync(stack, folder, timeout)
    wait_for(lambda: not in_progress(stack, folder), 60, f"{folder.name}: no file left in progress", 1)


class Watcher:
    """``dropvec watch FOLDER`` as a separate process, its output in a log file."""

    def __init__(self, stack: Stack, folder: Path) -> None:
        self.stack, self.folder, self.log = stack, folder, folder.parent / "watch.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dropvec", "watch", str(self.folder)],
                env=self.stack.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        proc = self.proc
        wait_for(
            lambda: b"watching" in self.log.read_bytes()[offset:] or proc.poll() is not None, 120, "watch"
        )
        assert proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-3000:]

    def lines(self, word: str, path: Path) -> int:
        return sum(1 for line in self.log.read_text().splitlines() if line.startswith(f"{word} {path}"))
