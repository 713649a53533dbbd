"""``dropvec check`` on a large collection: its time and memory at 1,000,000 rows.

    .venv/bin/python -m bench.check [--rows 1000000] [--files 20000] [--json]

Starts its own Valkey and Milvus (embedded) under a temporary folder, writes ``--files`` small
files and ``--rows`` rows spread over them (8-dimensional vectors: the check reads no vector, and
small ones make the collection quick to build), gives each file its ledger record, then times
the full check (every row streamed, every file hashed) and the cheap one (``up``'s periodic
check), with the peak RSS each adds to the process. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.core import private_settings, start_services
from dropvec.check import check
from dropvec.config.ids import chunk_id, doc_id_for, ids_digest
from dropvec.ledger.state import StateStore
from dropvec.workers.store import ensure_collection, milvus_client

DIM = 8


def build(settings: Any, folder: Path, rows: int, files: int, batch: int = 10_000) -> float:
    """The files, their rows and their records; the seconds the inserts took."""
    ensure_collection(settings, DIM)
    state = StateStore.from_settings(settings)
    client = milvus_client(settings)
    per_file, start, pending = rows // files, time.perf_counter(), []
    for f in range(files):
        path = folder / f"{f // 1000:03d}" / f"file-{f:06d}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"file {f}\n")
        doc, generation = doc_id_for(str(path)), f + 1
        ids = [chunk_id(doc, generation, i, "") for i in range(per_file)]
        pending += [
            {"id": i, "doc_id": doc, "text": f"chunk {n} of file {f}", "embed_hash": i,
             "generation": generation, "file_path": str(path), "file_type": "md", "modified": 0,
             "embedding": [0.1] * DIM}
            for n, i in enumerate(ids)
        ]  # fmt: skip
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        state.adopt(
            doc, path=str(path), sha256=sha, model=settings.model_key, generation=generation,
            chunks=per_file, ids=ids_digest(ids),
        )  # fmt: skip
        while len(pending) >= batch:
            client.insert(settings.collection, pending[:batch])
            pending = pending[batch:]
    if pending:
        client.insert(settings.collection, pending)
    client.flush(settings.collection)
    client.close()
    return time.perf_counter() - start


def own_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def timed(settings: Any, folder: Path, *, full: bool) -> dict[str, Any]:
    """One check: its seconds, and the RSS it added to this process at its peak (sampled every 0.1 s)."""
    base, peak, done = own_rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], own_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    report = check(settings, folder, full=full)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return {"check": "full" if full else "cheap", "seconds": round(seconds, 1), "clean": report.clean,
            "rows": report.rows, "findings": {k: v for k, v in report.counts().items() if v},
            "peak_rss_added_mb": round(max(peak[0] - base, 0), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropvec-bench-check-") as tmp:
        root = Path(tmp)
        settings, _ = private_settings(root, own_milvus=True)
        settings = settings.model_copy(update={"collection": "dropvec_check_bench"})
        services = start_services(settings)
        try:
            folder = root / "inbox"
            folder.mkdir()
            built = build(settings, folder, args.rows, args.files)
            results = [timed(settings, folder, full=True), timed(settings, folder, full=False)]
        finally:
            for service in reversed(services):
                service.stop()
    if args.json:
        return print(json.dumps({"rows": args.rows, "files": args.files, "build_seconds": built,
                                 "results": results}, indent=2))  # fmt: skip
    print(f"{args.rows} rows over {args.files} files (built in {built:.0f} s)")
    for r in results:
        print(f"{r['check']:5} check: {r['seconds']:7.1f} s, clean {r['clean']}, {r['rows']} rows, "
              f"peak RSS +{r['peak_rss_added_mb']} MB")  # fmt: skip


if __name__ == "__main__":
    main()
