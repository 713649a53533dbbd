"""`dropvec up` as a new user runs it: one command brings up Redis, Milvus, a worker and the
watched inbox; a file dropped in becomes searchable; Ctrl-C stops everything; data survives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.stack import free_port, is_reachable
from tests.corpus import SEED
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def start_up(cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dropvec", "up", "--workers", "1"], cwd=cwd, env=env,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    early: list[str] = []

    def started() -> bool:
        text = log.read_bytes()[offset:]
        if b"web page and API" in text and not Path(cwd, env.get("DROPVEC_INBOX", "inbox")).is_dir():
            early.append("the web page's URL was printed before the inbox was a folder")
        return b"dropvec is up" in text or proc.poll() is not None

    try:
        wait_for(started, 300, "dropvec up", interval=0.05)
        assert proc.poll() is None, log.read_text()
        assert not early, early[0]
    except BaseException:
        if proc.poll() is None:
            stop_up(proc)
        raise
    return proc


def stop_up(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user would; everything dropvec started must be gone afterwards."""
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


def status(cwd: Path, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "dropvec", "status", "--json"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


#: A Redis password that must never appear in any output or log.
SECRET = "s3cret-Pa55word"


def test_up_and_watch_refuse_an_inbox_that_is_not_a_folder_in_one_line_before_starting_anything(
    tmp_path: Path,
) -> None:
    redis_port = free_port()
    env = {**os.environ, "DROPVEC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "DROPVEC_MILVUS_URI": f"http://127.0.0.1:{free_port()}", "COLUMNS": "500"}  # fmt: skip
    inbox = tmp_path / "inbox"

    def refused(*command: str) -> str:
        result = subprocess.run([sys.executable, "-m", "dropvec", *command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert not (tmp_path / ".dropvec" / "redis").exists()  # (no server was started)
        assert not is_reachable("127.0.0.1", redis_port)
        return result.stderr.strip().removeprefix(f"error: cannot use {inbox} as the inbox: ")

    # Given a file where the inbox should be, when dropvec is asked to watch it,
    # then it says why in one line and starts nothing
    inbox.write_text("not a folder")
    assert refused("up", "--workers", "1") == refused("watch") == "it is not a folder"
    assert inbox.read_text() == "not a folder"
    # And a link to nothing in its place is named as such
    inbox.unlink()
    inbox.symlink_to(tmp_path / "unmounted" / "share")
    assert refused("watch") == "it is a link to nothing"


def test_up_ingests_the_inbox_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    # Given a fresh folder, nothing listening on the configured ports, and a Redis password
    redis_url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    milvus_uri = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DROPVEC_REDIS_URL": redis_url, "DROPVEC_MILVUS_URI": milvus_uri,
           "DROPVEC_SERVE_PORT": str(free_port())}  # fmt: skip
    log = tmp_path / "up.log"
    proc = start_up(tmp_path, env, log)
    try:
        # When the essay is copied into the inbox
        inbox = tmp_path / "inbox"
        assert inbox.is_dir()
        shutil.copy(SEED / "paul_graham_essay.txt", inbox / "paul_graham_essay.txt")
        # Then it is indexed and searchable
        state = StateStore.from_url(redis_url)
        doc = doc_id_for(str(inbox / "paul_graham_essay.txt"))
        wait_for(lambda: state.get_file(doc).get("status") == "indexed", 300, "the essay to be indexed")
        result = subprocess.run(
            [sys.executable, "-m", "dropvec", "search", "What did the author work on before college?",
             "-k", "3", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert any("writing and programming" in h["text"] for h in json.loads(result.stdout)), result.stdout
        before = status(tmp_path, env)
        assert before["entities"] == int(state.get_file(doc)["chunks_total"]) > 60
        assert before["workers"] == 1
        version = state.get_file(doc)["generation"]
        # and no process that up started shows the password on its command line (`ps`)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey" in " ".join(p.cmdline()) for p in family)
        assert not [p.cmdline() for p in family if SECRET in " ".join(p.cmdline())]
        assert (tmp_path / ".dropvec" / "redis" / "auth.conf").stat().st_mode & 0o077 == 0
    finally:
        stop_up(proc)
    assert "stopped." in log.read_text()
    # And when it is started again, the data is still there and the unchanged essay is not re-embedded
    proc = start_up(tmp_path, env, log)
    try:
        after = status(tmp_path, env)
        assert after["entities"] == before["entities"]
        record = StateStore.from_url(redis_url).get_file(doc)
        assert (record["status"], record["generation"]) == ("indexed", version)
    finally:
        stop_up(proc)
    # And the password was never printed or logged, by dropvec or by the servers and workers
    logs = [log, *(tmp_path / ".dropvec").rglob("*.log")]
    assert len(logs) > 3
    assert not [p for p in logs if SECRET in p.read_text(errors="replace")]
    assert SECRET not in json.dumps(after)
