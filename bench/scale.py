"""Scale-out benchmark: chunks/s with 1, 2 and 4 worker processes, each on a host of its own.

    sudo .venv/bin/python -m bench.scale [--workers 1 2 4] [--threads 1] [--corpus DIR] [--json]

For each worker count, a fresh network (``bench.netns``, Linux and root): Redis and Milvus on one
host, the producer on another, each worker on its own, given only the services' addresses. Each
worker has ``--threads`` model threads (default 1, so that a worker is a core's worth; 0: the
cores shared out, cores / workers). Time runs from the start of ``dropvec ingest --wait`` to its
end, once every worker is up. Efficiency is the speed-up over the first row divided by the most
the machine can give it: the workers' threads, up to the cores. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.core import SEED, peak_rss_mb
from bench.netns import Cluster, Network


def run_once(corpus: Path, workers: int, threads: int, root: Path) -> dict[str, Any]:
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    with Network("dvsc") as net:
        cluster = Cluster(net, root)
        try:
            cluster.start_services()
            for i in range(workers):
                cluster.add_worker(f"worker-{i}", threads)
            cluster.wait_for_workers(workers)
            start = time.perf_counter()
            ingest = cluster.dropvec("ingest", str(corpus), "--wait", "--timeout", "3600", timeout=3700)
            seconds = time.perf_counter() - start
            peak = peak_rss_mb([p.pid for p in cluster.procs[1:]])
            if ingest.returncode != 0:
                raise RuntimeError(ingest.stderr[-2000:])
            status = json.loads(cluster.dropvec("status", "--json").stdout)
        finally:
            cluster.stop()
    chunks = int(status["chunks_embedded"]) + int(status["chunks_reused"])
    return {
        "workers": workers,
        "threads_each": threads,
        "chunks": chunks,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(chunks / seconds, 1),
        "peak_rss_mb": round(peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=1, help="model threads per worker; 0: cores / workers")
    parser.add_argument(
        "--corpus", type=Path, default=SEED, help="folder to ingest (default: the seed corpus)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="dropvec-scale-") as tmp:
        for n in args.workers:
            row = run_once(args.corpus.absolute(), n, args.threads, Path(tmp) / f"w{n}")
            rows.append(row)
            first = rows[0]
            row["speedup"] = round(row["chunks_per_s"] / first["chunks_per_s"], 2)
            usable = min(n * row["threads_each"], cores) / min(
                first["workers"] * first["threads_each"], cores
            )
            row["efficiency"] = round(row["speedup"] / usable, 2)
            if args.json:
                print(json.dumps(row), flush=True)
    if args.json:
        return
    print(f"{cores} cores; corpus {args.corpus}")
    print(f"{'workers':>7} {'threads':>7} {'chunks':>7} {'seconds':>8} {'chunks/s':>9} {'speed-up':>8} "
          f"{'efficiency':>10} {'peak RSS/worker MB':>18}")  # fmt: skip
    for r in rows:
        print(
            f"{r['workers']:>7} {r['threads_each']:>7} {r['chunks']:>7} {r['seconds']:>8} "
            f"{r['chunks_per_s']:>9} {r['speedup']:>8} {r['efficiency']:>10} "
            f"{r['peak_rss_mb']:>18}"
        )


if __name__ == "__main__":
    main()
