"""The producer alone: how fast one producer process reads, chunks and queues, with no workers.

    .venv/bin/python -m bench.producer [--corpus DIR] [--big-mb 200] [--json]

For the corpus (default ``../shared/corpus/public``) and for one ``--big-mb`` MB text file (the
essay's paragraphs, numbered so that each is distinct text; 0 skips it), two rows each:
- read and chunk: ``read_sections`` and ``iter_chunks`` in this process, one core, nothing else;
- ``dropvec ingest`` as a user runs it (no workers, the queue limit and the size limit lifted, so
  that back-pressure never waits), to the last task queued: reading, chunking, the ledger's
  writes and the Celery messages into Redis. Its start-up (the same command on an empty folder)
  is measured apart and reported beside the time after it.
Reported: seconds, chunks, chunks/s and MB/s. Starts its own Valkey (and Milvus, which ingest
checks) under a temporary folder. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.burst import big_file
from bench.core import file_chunks, private_settings, start_services

PUBLIC = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "public"


def read_and_chunk(settings: Any, folder: Path) -> dict[str, Any]:
    from dropvec.producer.files import expand
    from dropvec.producer.tokens import load_window

    load_window(settings.embed_model_path)  # (loaded once, before the clock starts)
    files = list(expand([folder]))
    start = time.perf_counter()
    chunks = 0
    for path in files:
        try:
            chunks += sum(1 for _ in file_chunks(settings, path))
        except Exception:  # noqa: BLE001 - a file dropvec would skip or fail counts nothing
            continue
    return {"chunks": chunks, "seconds": time.perf_counter() - start}


def ingest(env: dict[str, str], folder: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "dropvec", "ingest", str(folder)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return time.perf_counter() - start, lines[-1] if lines else ""


def ledger(settings: Any) -> Any:
    from dropvec.ledger.state import StateStore

    return StateStore.from_settings(settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=PUBLIC)
    parser.add_argument("--big-mb", type=int, default=200, help="0: the corpus only")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-"))
    settings, _ = private_settings(root)
    settings = settings.model_copy(
        update={"max_queue_depth": 10**9, "max_file_bytes": max(args.big_mb + 56, 256) * 2**20}
    )
    env = {**os.environ, **settings.to_env()}
    folders = [("corpus " + args.corpus.name, args.corpus.resolve())]
    if args.big_mb:
        big = root / "big"
        big.mkdir()
        big_file(big / "big.txt", args.big_mb)
        folders.append((f"one {args.big_mb} MB text file", big))
    empty = root / "empty"
    empty.mkdir()
    services = start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        start_up, _ = ingest(env, empty)
        for name, folder in folders:
            megabytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
            alone = read_and_chunk(settings, folder)
            rows.append({"system": f"{name}: read and chunk", "mb": megabytes, **alone})
            ledger(settings).r.flushdb()
            seconds, said = ingest(env, folder)
            rows.append(
                {
                    "system": f"{name}: dropvec ingest, no workers",
                    "mb": megabytes,
                    "chunks": sum(r.chunks_total for r in ledger(settings).records()),
                    "seconds": seconds - start_up,
                    "wall_s": seconds,
                    "start_up_s": start_up,
                    "said": said,
                }
            )
    finally:
        for s in reversed(services):
            s.stop(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        row["chunks_per_s"] = row["chunks"] / row["seconds"]
        row["mb_per_s"] = row["mb"] / row["seconds"]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"machine: {os.cpu_count()} cores; one producer process")
    for row in rows:
        extra = ""
        if "wall_s" in row:
            extra = f" (wall {row['wall_s']:.1f} s, start-up {row['start_up_s']:.1f} s)"
        print(
            f"{row['system']:<55} {row['chunks']:>8} chunks {row['seconds']:>7.1f} s"
            f" {row['chunks_per_s']:>7.0f} chunks/s {row['mb_per_s']:>5.2f} MB/s{extra}"
        )
        if row.get("said"):
            print(f"  dropvec said: {row['said']}")


if __name__ == "__main__":
    main()
