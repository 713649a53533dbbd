"""Burst and big-file benchmark: memory and time while 10,000 small files, then one 200 MB text
file, go through a real producer (``dropvec ingest``) and two worker processes.

    .venv/bin/python -m bench.burst [--files 10000] [--big-mb 200] [--json]

1. Burst: ``--files`` small files (a few sentences each, every one different, so every chunk is
   embedded) are written into a folder and ingested. Reported: seconds to the last chunk written,
   peak RSS of the producer and of each worker, and the deepest the queue got (back-pressure holds
   it at ``DROPVEC_MAX_QUEUE_DEPTH``, set to 200 here).
2. Big file: a ``--big-mb`` MB text file (distinct paragraphs) is ingested with the size limit
   and the queue limit raised past it, with the workers stopped (embedding it all would take hours
   on a CPU). Reported: the producer's peak RSS and its time to read, chunk and queue the whole
   file, then the peak RSS of two workers over their first ``--worker-seconds`` on its tasks.

Starts its own Valkey, Milvus (unless one answers) and workers under a temporary folder. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.core import SEED, private_settings, start_services

WORKERS = 2
QUEUE_DEPTH = 200


class Sampler(threading.Thread):
    """Peak RSS of some processes (with their children), and the deepest queue, every 0.1 s."""

    def __init__(self, settings: Any) -> None:
        super().__init__(daemon=True)
        import redis

        from dropvec.config.settings import QUEUE

        self.redis = redis.Redis.from_url(settings.redis_url)
        self.queue = QUEUE
        self.procs: dict[str, int] = {}
        self.peak_mb: dict[str, float] = {}
        self.max_depth = 0
        self.stopped = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        self.procs[name] = pid
        self.peak_mb.setdefault(name, 0.0)

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            for name, pid in list(self.procs.items()):
                try:
                    proc = psutil.Process(pid)
                    rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
                except psutil.Error:
                    continue
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss / 2**20)
            self.max_depth = max(self.max_depth, int(self.redis.llen(self.queue)))


def small_files(folder: Path, count: int) -> None:
    rng = random.Random(1)
    words = (SEED / "paul_graham_essay.txt").read_text().split()
    for i in range(count):
        sub = folder / f"d{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        start = rng.randrange(len(words) - 40)
        (sub / f"note-{i:05d}.txt").write_text(f"Note {i}. " + " ".join(words[start : start + 30]))


def big_file(path: Path, megabytes: int) -> None:
    """Paragraphs of the essay, numbered so that each is distinct text."""
    paragraphs = [p for p in (SEED / "paul_graham_essay.txt").read_text().split("\n\n") if p.strip()]
    target = megabytes * 2**20
    with path.open("w") as f:
        n = 0
        while f.tell() < target:
            f.write(f"§{n}. {paragraphs[n % len(paragraphs)]}\n\n")
            n += 1


def run_ingest(
    settings: Any, folder: Path, sampler: Sampler, env: dict[str, str], *, wait: bool = True
) -> tuple[float, str]:
    """``dropvec ingest`` as a user runs it; seconds until every chunk is written (``wait``) or
    every task is queued."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropvec", "ingest", str(folder), *(["--wait"] if wait else [])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sampler.watch("producer", proc.pid)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.procs.pop("producer")
    last = [line for line in output.splitlines() if line.strip()][-1:] or [""]
    return seconds, last[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000, help="0: the big file only")
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--worker-seconds", type=float, default=60)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    from dropvec.stack import start_workers

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-"))
    settings, own_milvus = private_settings(root)
    settings = settings.model_copy(
        update={"max_queue_depth": QUEUE_DEPTH, "max_file_bytes": (args.big_mb + 56) * 2**20}
    )
    env = {**os.environ, **settings.to_env()}
    services = start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        workers = start_workers(settings, WORKERS, root / "logs")
        services += workers
        while len(_live(settings)) < WORKERS:
            time.sleep(0.5)
        sampler = Sampler(settings)
        sampler.watch("redis", services[0].proc.pid)
        for i, w in enumerate(workers):
            sampler.watch(f"worker-{i}", w.proc.pid)
        sampler.start()

        if args.files:
            burst = root / "burst"
            burst.mkdir()
            small_files(burst, args.files)
            seconds, summary = run_ingest(settings, burst, sampler, env)
            rows.append(_row(f"burst of {args.files} small files", seconds, sampler, summary))

        for w in workers:
            w.stop(timeout=60)
        sampler.procs = {"redis": sampler.procs["redis"]}
        sampler.peak_mb = {"redis": 0.0}
        sampler.max_depth = 0
        big = root / "big"
        big.mkdir()
        big_file(big / "big.txt", args.big_mb)
        env["DROPVEC_MAX_QUEUE_DEPTH"] = str(10**9)
        seconds, summary = run_ingest(settings, big, sampler, env, wait=False)
        rows.append(_row(f"one {args.big_mb} MB text file, read and queued", seconds, sampler, summary))
        sampler.peak_mb = {"redis": 0.0}
        workers = start_workers(settings, WORKERS, root / "logs", first=WORKERS)
        services += workers
        for i, w in enumerate(workers):
            sampler.watch(f"worker-{i}", w.proc.pid)
        time.sleep(args.worker_seconds)
        system = f"the same file, workers' first {args.worker_seconds:.0f} s on its tasks"
        rows.append(_row(system, args.worker_seconds, sampler, ""))
        sampler.stopped.set()
    finally:
        for s in reversed(services):
            s.stop(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"machine: {os.cpu_count()} cores, {WORKERS} workers, queue limit {QUEUE_DEPTH} tasks")
    for row in rows:
        rss = ", ".join(f"{name} {mb} MB" for name, mb in row["peak_rss_mb"].items())
        print(f"{row['system']}: {row['seconds']:.1f} s; deepest queue {row['max_queue_depth']} tasks")
        print(f"  peak RSS: {rss}")
        if row["summary"]:
            print(f"  dropvec said: {row['summary']}")


def _live(settings: Any) -> list[str]:
    from dropvec.status import live_workers

    return list(live_workers(settings))


def _row(system: str, seconds: float, sampler: Sampler, summary: str) -> dict[str, Any]:
    return {
        "system": system,
        "seconds": round(seconds, 2),
        "peak_rss_mb": {k: round(v) for k, v in sampler.peak_mb.items()},
        "max_queue_depth": sampler.max_depth,
        "summary": summary,
    }


if __name__ == "__main__":
    main()
