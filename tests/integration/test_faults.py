"""Faults: a worker killed mid-task, Milvus down for 30 s, Redis restarted, the producer killed
mid-enqueue, a burst of 10,000 files. After each, every expected chunk is in Milvus exactly once
and no file is left in progress. Recovery times are printed (``pytest -s``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dropvec.config.ids import doc_id_for
from dropvec.config.settings import QUEUE
from dropvec.ledger.state import StateStore
from dropvec.stack import Service, start_milvus, start_redis, start_workers
from dropvec.status import live_workers
from tests.corpus import SEED
from tests.integration.conftest import Stack, local_settings, running_stack, wait_for
from tests.integration.sync_check import Watcher, unique_text, wait_settled

pytestmark = pytest.mark.integration

#: Short, so that a task of a killed worker comes back within the test.
LEASE_SECONDS = 10


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own, whose services the tests may kill."""
    root = tmp_path_factory.mktemp("faults")
    with running_stack(local_settings(root, task_lease_seconds=LEASE_SECONDS), root, 2) as running:
        yield running


def service(stack: Stack, name: str) -> Service:
    return next(s for s in stack.services if s.name.startswith(name) and s.proc.poll() is None)


def replace(stack: Stack, old: Service, new: Service | None) -> None:
    assert new is not None
    stack.services[stack.services.index(old)] = new


def corpus(stack: Stack, name: str, files: int = 12) -> Path:
    """The essay and ``files`` small files of their own, in a fresh folder."""
    folder = stack.root / name
    folder.mkdir()
    shutil.copy(SEED / "paul_graham_essay.txt", folder / "essay.txt")
    for i in range(files):
        (folder / f"note-{i}.md").write_text(unique_text(4))
    return folder


def started(stack: Stack, folder: Path) -> bool:
    state = StateStore.from_url(stack.settings.redis_url)
    return int(state.get_file(doc_id_for(str(folder / "essay.txt"))).get("chunks_done") or 0) > 0


def report(what: str, seconds: float) -> None:
    print(f"\nrecovered from {what} in {seconds:.1f} s")


def held_task(log: Path, at_least: float) -> str | None:
    """The id of an embed task the worker logging to ``log`` has been running for ``at_least``
    seconds (a long one: it will not end before a signal sent now arrives), or None."""
    text = log.read_text(errors="replace")
    done = set(re.findall(r"Task dropvec\.embed_chunks\[([\w-]+)\] succeeded", text))
    for when, task_id in re.findall(
        r"^(\S+ \S+) INFO \S+ Task dropvec\.embed_chunks\[([\w-]+)\] received", text, re.M
    ):
        since = datetime.now() - datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f")
        if task_id not in done and since.total_seconds() >= at_least:
            return task_id
    return None


def test_a_worker_killed_mid_task_loses_nothing(own: Stack) -> None:
    # Given an ingest under way, with files whose tasks take a second or more to embed
    folder = corpus(own, "killed-worker")
    for i in range(4):
        (folder / f"long-{i}.md").write_text(unique_text(400))
    assert own.dropvec("ingest", str(folder)).returncode == 0
    # When a worker is killed with SIGKILL in the middle of a task it holds
    victim = service(own, "worker-0")
    held = wait_for(lambda: held_task(victim.log_path, 0.1), 120, "worker-0 to hold a long task", 0.02)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    assert f"[{held}] succeeded" not in victim.log_path.read_text(errors="replace"), (
        "it ended before the kill"
    )
    t0 = time.monotonic()
    # Then its task comes back after the lease, and everything is stored exactly once
    wait_settled(own, folder)
    report("a worker killed with SIGKILL", time.monotonic() - t0)
    # and the task it held was run again by the other worker, and every task was counted once
    assert f"[{held}] succeeded" in (own.root / "logs" / "worker-1.log").read_text(errors="replace")
    state = StateStore.from_url(own.settings.redis_url)
    for path in state.paths_under(str(folder)):
        record = state.get_file(doc_id_for(path))
        assert record["status"] == "indexed" and record["chunks_done"] == record["chunks_total"], record
    replace(own, victim, start_workers(own.settings, 1, own.root / "logs", first=2)[0])
    wait_for(lambda: len(live_workers(own.settings)) == 2, 180, "the replacement worker")


def stop_mid_ingest(own: Stack, name: str, down: float, start: Callable[..., Service | None]) -> None:
    """Stop service ``name`` once an ingest is under way, start it again ``down`` seconds later,
    and check that the ingest ends with everything stored exactly once."""
    folder = corpus(own, f"{name}-down", files=30)
    assert own.dropvec("ingest", str(folder)).returncode == 0
    wait_for(lambda: started(own, folder), 120, "the first task to finish", 0.05)
    stopped = service(own, name)
    stopped.stop()
    time.sleep(down)
    replace(own, stopped, start(own.settings, own.settings.data_dir))
    t0 = time.monotonic()
    wait_settled(own, folder)
    report(f"{name} down for {down:.0f} s (from its restart)", time.monotonic() - t0)


def test_milvus_down_for_30_seconds_mid_ingest_loses_nothing(own: Stack) -> None:
    stop_mid_ingest(own, "milvus", 30, start_milvus)


def test_redis_restarted_mid_ingest_loses_nothing(own: Stack) -> None:
    stop_mid_ingest(own, "redis", 5, start_redis)


def test_a_producer_killed_mid_enqueue_is_caught_up_by_the_next_run(own: Stack) -> None:
    # Given a producer enqueueing many files
    folder = corpus(own, "killed-producer", files=80)
    producer = subprocess.Popen(
        [sys.executable, "-m", "dropvec", "ingest", str(folder)], env=own.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state = StateStore.from_url(own.settings.redis_url)
    wait_for(lambda: len(state.paths_under(str(folder))) >= 10, 120, "some files to be queued", 0.02)
    # When it is killed half-way, and run again
    producer.send_signal(signal.SIGKILL)
    producer.wait(30)
    assert len(state.paths_under(str(folder))) < 81, "the producer finished before it was killed"
    t0 = time.monotonic()
    again = own.dropvec("ingest", str(folder), "--wait", "--timeout", "300")
    # Then every file is indexed exactly once
    assert again.returncode == 0, again.stderr
    wait_settled(own, folder)
    report("a producer killed mid-enqueue (second run)", time.monotonic() - t0)
    assert os.path.exists(folder / "essay.txt")


def test_a_producer_stopped_with_sigterm_finishes_the_file_in_hand(own: Stack) -> None:
    # Given a producer enqueueing many files
    folder = corpus(own, "sigterm-producer", files=300)
    producer = subprocess.Popen(
        [sys.executable, "-m", "dropvec", "ingest", str(folder)], env=own.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    state = StateStore.from_url(own.settings.redis_url)
    wait_for(lambda: len(state.paths_under(str(folder))) >= 10, 120, "some files to be queued", 0.02)
    # When it is sent SIGTERM
    producer.send_signal(signal.SIGTERM)
    stdout, stderr = producer.communicate(timeout=60)
    # Then it stops after the file in hand, says how many it did not read, and every file it
    # started has all its tasks sent
    assert producer.returncode == 130, stderr
    assert "file(s) not read; run the command again" in stderr
    started = state.paths_under(str(folder))
    assert len(started) < 301
    assert all(state.get_file(doc_id_for(p)).get("task_count", "0") != "0" for p in started)
    # and the next run does the rest
    again = own.dropvec("ingest", str(folder), "--wait", "--timeout", "300")
    assert again.returncode == 0, again.stderr
    wait_settled(own, folder)


def test_the_watcher_rides_out_a_redis_outage(own: Stack) -> None:
    # Given a watched folder
    folder = own.root / "watched"
    folder.mkdir()
    watcher = Watcher(own, folder)
    watcher.start()
    try:
        # When Redis goes away, a file is dropped, and Redis comes back
        redis = service(own, "redis")
        redis.stop()
        (folder / "during-outage.md").write_text(unique_text(2))
        wait_for(lambda: b"trying again shortly" in watcher.log.read_bytes(), 60, "the watcher to notice")
        replace(own, redis, start_redis(own.settings, own.settings.data_dir))
        # Then the file is indexed without restarting the watcher
        wait_settled(own, folder)
    finally:
        watcher.stop()


def test_a_burst_of_10000_small_files_is_absorbed_within_the_queue_limit(own: Stack) -> None:
    # Given 10,000 small files dropped at once, and a queue limit well below that
    folder = own.root / "burst"
    for i in range(BURST_FILES):
        sub = folder / f"d{i // 1000}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"n{i:05d}.txt").write_text(f"Note {i}: {uuid.uuid4().hex} was dropped in a burst.")
    depths = QueueDepths(own)
    # When they are ingested
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dropvec", "ingest", str(folder), "--wait", "--timeout", "1200"],
        env={**own.env, "DROPVEC_MAX_QUEUE_DEPTH": str(BURST_QUEUE_LIMIT)},
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    depths.stop()
    # Then every file is indexed, the queue never held more than its limit, and every chunk is
    # stored exactly once
    assert result.returncode == 0, result.stderr
    assert f"indexed {BURST_FILES} file(s)" in result.stdout
    assert depths.deepest <= BURST_QUEUE_LIMIT
    wait_settled(own, folder)
    print(f"\n{BURST_FILES} files indexed in {time.monotonic() - t0:.0f} s; deepest queue {depths.deepest}")


BURST_FILES = 10_000
BURST_QUEUE_LIMIT = 100


class QueueDepths(threading.Thread):
    """The deepest the task queue gets, sampled every 50 ms."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.redis = StateStore.from_url(stack.settings.redis_url).r
        self.deepest = 0
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.deepest = max(self.deepest, int(self.redis.llen(QUEUE)))  # type: ignore[arg-type]

    def stop(self) -> None:
        self.done.set()
        self.join()
