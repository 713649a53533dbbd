"""Folder sync benchmark: re-ingest, edit one paragraph, and drop-to-searchable latency.

    .venv/bin/python -m bench.sync [--drops 20] [--json]

1. Re-ingest: a corpus (the essay, a few RFCs and Markdown pages) is ingested into an empty
   collection, then ingested again unchanged, then again with ``--force`` (read and chunked again,
   every vector reused). Times are to the last chunk written.
2. Edit: one paragraph of paul_graham_essay.txt gets a sentence; how many chunks are embedded for
   the new version (at the middle paragraph, and the worst over ten paragraphs spread through it).
3. Latency: ``dropvec watch`` runs on a folder; small files are written into it one at a time,
   with the workers idle; the time from the file being closed to its chunk being returned by a
   Milvus query is measured (p50, p95).

Starts its own Valkey and two workers on free ports under a temporary folder; uses the configured
Milvus when one answers, else starts the embedded one. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.core import SEED, private_settings, start_services

PUBLIC = SEED.parent / "public"
WORKERS = 2


def corpus() -> list[Path]:
    rfcs = [PUBLIC / "txt" / "ietf-rfcs" / f"rfc{n}.txt" for n in (3266, 4102, 3420)]
    pages = sorted((PUBLIC / "md" / "tldr-pages").glob("*.md"))[:60]
    return [SEED / "paul_graham_essay.txt", *rfcs, *pages]


def ingest_and_wait(producer: Any, paths: list[Path], *, force: bool = False) -> tuple[Any, float]:
    start = time.perf_counter()
    report = producer.ingest(paths, force=force)
    while not producer.state.progress(report.run_id).finished:
        time.sleep(0.02)
    return report, time.perf_counter() - start


def settle_removals(settings: Any, timeout: float = 60) -> None:
    """Wait for the queue to drain (removals of replaced versions run after a file is indexed)."""
    import redis

    from dropvec.config.settings import QUEUE

    r = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    while r.llen(QUEUE) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


def reingest(settings: Any, producer: Any, root: Path) -> dict[str, Any]:
    folder = root / "corpus"
    folder.mkdir()
    for f in corpus():
        shutil.copy(f, folder / f.name)
    first, t_first = ingest_and_wait(producer, [folder])
    settle_removals(settings)
    again, t_again = ingest_and_wait(producer, [folder])
    forced, t_forced = ingest_and_wait(producer, [folder], force=True)
    settle_removals(settings)
    return {
        "files": len(first.outcomes),
        "chunks": first.chunks,
        "first_s": t_first,
        "unchanged_s": t_again,
        "unchanged_speedup": t_first / t_again,
        "unchanged_files_skipped": again.unchanged,
        "forced_s": t_forced,
        "forced_speedup": t_first / t_forced,
    }


def edit(settings: Any, producer: Any, root: Path) -> dict[str, Any]:
    from dropvec.config.ids import doc_id_for

    path = root / "edit" / "paul_graham_essay.txt"
    path.parent.mkdir()
    shutil.copy(SEED / "paul_graham_essay.txt", path)
    ingest_and_wait(producer, [path])
    paragraphs = path.read_text().split("\n\n")
    spots = [len(paragraphs) // 2] + [int(len(paragraphs) * (i + 0.5) / 10) for i in range(10)]
    embedded = []
    for i in spots:
        paragraphs[i] += f" A sentence added for the benchmark, {uuid.uuid4().hex[:8]}."
        path.write_text("\n\n".join(paragraphs))
        ingest_and_wait(producer, [path])
        record = producer.state.get_file(doc_id_for(str(path)))
        embedded.append(int(record["chunks_embedded"]))
    return {
        "chunks": int(record["chunks_total"]),
        "embedded_middle_paragraph": embedded[0],
        "embedded_worst_of_10": max(embedded[1:]),
        "embedded_mean_of_10": statistics.mean(embedded[1:]),
    }


def latency(settings: Any, root: Path, drops: int) -> dict[str, Any]:
    from dropvec.config.ids import doc_id_for
    from dropvec.workers.store import milvus_client

    folder = root / "inbox"
    folder.mkdir()
    log = root / "watch.log"
    env = {**os.environ, **settings.to_env()}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dropvec", "watch", str(folder)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = milvus_client(settings)
    seconds = []
    try:
        deadline = time.monotonic() + 120
        while b"watching" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dropvec watch did not start:\n{log.read_text()}")
            time.sleep(0.1)
        for i in range(drops):
            path = folder / f"note-{i}.md"
            path.write_text(
                f"# Note {i}\n\nA short note about {uuid.uuid4().hex}, dropped into the folder.\n"
            )
            landed = time.perf_counter()
            expr = f'doc_id == "{doc_id_for(str(path))}"'
            while not client.query(settings.collection, filter=expr, output_fields=["id"]):
                if time.perf_counter() - landed > 60:
                    raise SystemExit(f"{path.name} not searchable after 60 s:\n{log.read_text()[-2000:]}")
                time.sleep(0.01)
            seconds.append(time.perf_counter() - landed)
            time.sleep(1.0)  # the workers are idle again before the next drop
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
    seconds.sort()
    return {
        "drops": drops,
        "settle_seconds": settings.settle_seconds,
        "p50_s": statistics.median(seconds),
        "p95_s": seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))],
        "max_s": seconds[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drops", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from dropvec.producer.enqueue import Producer
    from dropvec.stack import start_workers
    from dropvec.status import live_workers

    logging.getLogger("producer").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-sync-"))
    settings, _ = private_settings(root)
    services = start_services(settings)
    try:
        services += start_workers(settings, WORKERS, root / "logs")
        deadline = time.monotonic() + 300
        while len(live_workers(settings)) < WORKERS:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; see {root / 'logs'}")
            time.sleep(0.5)
        producer = Producer.from_settings(settings)
        results = {
            "reingest": reingest(settings, producer, root),
            "edit": edit(settings, producer, root),
            "latency": latency(settings, root, args.drops),
        }
    finally:
        for s in reversed(services):
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    r, e, lat = results["reingest"], results["edit"], results["latency"]
    print(f"re-ingest, {r['files']} files, {r['chunks']} chunks, {WORKERS} workers:")
    print(f"  first pass          {r['first_s']:8.2f} s")
    print(f"  again, unchanged    {r['unchanged_s']:8.3f} s   {r['unchanged_speedup']:7.0f}x faster")
    forced = f"{r['forced_s']:8.2f} s   {r['forced_speedup']:7.1f}x faster"
    print(f"  again, --force      {forced} (read and chunked again, all vectors reused)")
    print(f"edit one paragraph of the essay ({e['chunks']} chunks): chunks embedded again")
    print(f"  middle paragraph    {e['embedded_middle_paragraph']}")
    print(f"  10 paragraphs       worst {e['embedded_worst_of_10']}, mean {e['embedded_mean_of_10']:.1f}")
    print(f"drop to searchable, {lat['drops']} small files, idle workers, settle {lat['settle_seconds']} s:")
    print(f"  p50 {lat['p50_s']:.2f} s   p95 {lat['p95_s']:.2f} s   max {lat['max_s']:.2f} s")


if __name__ == "__main__":
    main()
