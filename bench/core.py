"""Core pipeline benchmark: model ceiling vs dropvec end to end, and sync vs async Milvus calls.

    .venv/bin/python -m bench.core [--files F ...] [--json]

Starts its own Valkey and worker on free ports under a temporary folder; uses the configured Milvus
(DROPVEC_MILVUS_URI) when one answers there, else starts the embedded one on a free port.
Prints figures; asserts nothing. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psutil

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "seed"


def file_chunks(settings: Any, path: Path) -> Iterator[Any]:
    """The chunks of ``path`` as the producer cuts them, lazily (the reader's errors raised)."""
    from dropvec.config.ids import doc_id_for
    from dropvec.producer.chunk import iter_chunks
    from dropvec.producer.read import read_sections
    from dropvec.producer.tokens import load_window

    return iter_chunks(
        read_sections(path),
        doc_id=doc_id_for(str(path)),
        file_metadata={"file_name": path.name},
        tokens=load_window(settings.embed_model_path),
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        embed_keys=settings.embed_metadata_keys,
    )


def chunk_texts(settings: Any, files: list[Path]) -> list[str]:
    from dropvec.config.messages import embedded_text

    return [embedded_text(c) for f in files for c in file_chunks(settings, f)]


def model_ceiling(settings: Any, texts: list[str]) -> float:
    """The backend's own encode of the same chunks, no queue and no storage: chunks/s."""
    from dropvec.workers.embed import load_embedder

    model = load_embedder(settings)  # the configured backend, in the worker's batches
    return len(texts) / encode_seconds(model, texts, warm_up=16)


def encode_seconds(model: Any, texts: list[str], warm_up: int = 64) -> float:
    """Seconds of ``model``'s batched encode of ``texts`` (``get_text_embedding_batch``), after
    encoding the first ``warm_up`` of them once."""
    model.get_text_embedding_batch(texts[:warm_up])
    start = time.perf_counter()
    model.get_text_embedding_batch(texts)
    return time.perf_counter() - start


def high_water_mb(pid: int | None = None) -> float:
    """Peak RSS in MB of a live process (None: this one) over its life: Linux's VmHWM, exact and
    one read where sampling RSS every 0.1 s cost 2% of a core beside the rows it measured.
    Where /proc has no VmHWM, its RSS now."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def peak_rss_mb(pids: list[int]) -> float:
    """The highest peak RSS in MB of live processes, each with its children (their peaks added:
    at most what they held at once). Read once, before the processes end."""
    peaks = [0.0]
    for pid in pids:
        try:
            tree = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
            peaks.append(sum(high_water_mb(p) for p in tree))
        except psutil.Error:
            continue
    return max(peaks)


class EndToEnd(NamedTuple):
    chunks: int
    seconds: float
    #: The highest peak RSS of one worker process, in MB.
    peak_mb: float
    #: CPU seconds the worker processes (all together) and the producer's process spent in the run.
    workers_cpu_s: float
    producer_cpu_s: float


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of the processes ``pids`` so far (those ended are skipped)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def end_to_end(settings: Any, files: list[Path], workers: int, root: Path, first: int = 0) -> EndToEnd:
    """Enqueue ``files`` and wait until every chunk is written, with ``workers`` warm processes
    (numbered from ``first``)."""
    from dropvec.producer.enqueue import Producer
    from dropvec.stack import start_workers
    from dropvec.status import live_workers

    services = start_workers(settings, workers, root / "logs", first=first)
    try:
        deadline = time.monotonic() + 300
        while len(live_workers(settings)) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start; see " + str(root / "logs"))
            time.sleep(0.5)
        producer = Producer.from_settings(settings)
        pids = [s.proc.pid for s in services]
        start, cpu, own = time.perf_counter(), cpu_seconds(pids), time.process_time()
        report = producer.ingest(files, force=True)
        while not producer.state.progress(report.run_id).finished:
            time.sleep(0.05)
        elapsed, own = time.perf_counter() - start, time.process_time() - own
        cpu = cpu_seconds(pids) - cpu
        return EndToEnd(report.chunks, elapsed, peak_rss_mb(pids), cpu, own)
    finally:
        for s in services:
            s.stop()


def drop_collection(settings: Any, name: str | None = None) -> None:
    from dropvec.workers.store import milvus_client

    client = milvus_client(settings)
    client.drop_collection(name or settings.collection)
    client.close()


def milvus_table(settings: Any, sizes: tuple[int, ...] = (10, 100, 1000)) -> list[dict[str, Any]]:
    """The LlamaIndex Milvus async tutorial's comparison: N single-node adds and N searches,
    one after another (sync) or all at once on the event loop (async)."""
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import VectorStoreQuery
    from llama_index.vector_stores.milvus import MilvusVectorStore

    dim = 384
    rows = []

    def node() -> TextNode:
        return TextNode(text="random text " * 8, embedding=[random.random() for _ in range(dim)])

    def query() -> VectorStoreQuery:
        return VectorStoreQuery(query_embedding=[random.random() for _ in range(dim)], similarity_top_k=3)

    async def run() -> None:
        store = MilvusVectorStore(
            uri=settings.milvus_uri,
            collection_name="bench_async_table",
            dim=dim,
            overwrite=True,
            similarity_metric="COSINE",
            consistency_level=settings.consistency_level,
        )
        for n in sizes:
            t = time.perf_counter()
            for _ in range(n):
                store.add([node()])
            sync_add = time.perf_counter() - t
            t = time.perf_counter()
            await asyncio.gather(*(store.async_add([node()]) for _ in range(n)))
            async_add = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n):
                store.query(query())
            sync_search = time.perf_counter() - t
            t = time.perf_counter()
            await asyncio.gather(*(store.aquery(query()) for _ in range(n)))
            async_search = time.perf_counter() - t
            rows.append(
                {
                    "n": n,
                    "sync_add_s": sync_add,
                    "async_add_s": async_add,
                    "sync_search_s": sync_search,
                    "async_search_s": async_search,
                }
            )
        store.client.drop_collection("bench_async_table")

    asyncio.run(run())
    return rows


def private_settings(root: Path, own_milvus: bool = False) -> tuple[Any, bool]:
    """Settings for a benchmark, and whether it needs its own Milvus.

    Milvus: the configured one when it answers (unless ``own_milvus``), else an embedded one.
    Redis and the workers are always private, so that no other dropvec worker takes the
    benchmark's tasks. The collection is the benchmark's own, dropped first: nothing indexed
    before can be reused.
    """
    from dropvec.config.settings import Settings
    from dropvec.stack import free_port, is_reachable

    configured = Settings()
    host_port = configured.milvus_host_port
    own_milvus = own_milvus or host_port is None or not is_reachable(*host_port)
    settings = configured.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "milvus_uri": f"http://127.0.0.1:{free_port()}" if own_milvus else configured.milvus_uri,
            "collection": "dropvec_bench",
            "data_dir": root / "data",
            "log_level": "WARNING",
        }
    )
    settings.prepare_environment()
    return settings, own_milvus


def start_services(settings: Any, redis: bool = True) -> list[Any]:
    """Redis (unless not wanted), and Milvus unless one answers; the benchmark collection dropped
    if it exists."""
    from dropvec.stack import start_milvus, start_redis

    started = [start_redis(settings, settings.data_dir) if redis else None]
    services = [s for s in (*started, start_milvus(settings, settings.data_dir)) if s]
    drop_collection(settings)
    return services


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", nargs="*", type=Path, default=[SEED / "paul_graham_essay.txt"])
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-"))
    settings, own_milvus = private_settings(root)
    files = [f.absolute() for f in args.files]
    texts = chunk_texts(settings, files)
    services = start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        ceiling = model_ceiling(settings, texts)
        rows.append(
            {
                "system": f"model ceiling ({settings.resolved_backend()} encode)",
                "chunks": len(texts),
                "seconds": len(texts) / ceiling,
                "chunks_per_s": ceiling,
            }
        )
        chunks, seconds, *_ = end_to_end(settings, files, 1, root)
        rows.append(
            {
                "system": "dropvec end to end, 1 worker process",
                "chunks": chunks,
                "seconds": seconds,
                "chunks_per_s": chunks / seconds,
                "ratio_to_ceiling": chunks / seconds / ceiling,
            }
        )
        table = milvus_table(settings)
        drop_collection(settings)
    finally:
        for s in reversed(services):
            s.stop()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        for row in table:
            print(json.dumps({"system": "milvus sync vs async", **row}))
        return
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, files: {[f.name for f in files]}"
    )
    print(f"{'system':48} {'chunks':>7} {'seconds':>8} {'chunks/s':>9} {'vs ceiling':>10}")
    for row in rows:
        ratio = f"{row['ratio_to_ceiling']:.0%}" if "ratio_to_ceiling" in row else ""
        figures = f"{row['chunks']:7d} {row['seconds']:8.2f} {row['chunks_per_s']:9.1f} {ratio:>10}"
        print(f"{row['system']:48} {figures}")
    milvus = f"embedded {settings.embedded_milvus}" if own_milvus else settings.milvus_uri
    print(f"\nMilvus ({milvus}), seconds for N calls,")
    print("sync (one after another) vs async (all gathered on one event loop):")
    print(f"{'N':>6} {'add sync':>9} {'add async':>10} {'search sync':>12} {'search async':>13}")
    for r in table:
        print(
            f"{r['n']:6d} {r['sync_add_s']:9.3f} {r['async_add_s']:10.3f} "
            f"{r['sync_search_s']:12.3f} {r['async_search_s']:13.3f}"
        )


if __name__ == "__main__":
    main()
