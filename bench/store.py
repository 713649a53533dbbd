"""Milvus alone: the write path with precomputed vectors, then search latency at N entities.

    .venv/bin/python -m bench.store [--entities 100000] [--milvus lite|standalone] [--json]

1. Write path: ``--entities`` nodes with random unit vectors (384 dimensions) and chunk-sized
   text are written through dropvec's own ``ChunkWriter`` (llama-index ``MilvusVectorStore``
   ``async_add`` batches, ``write_concurrency`` in flight), for each batch size and concurrency in
   ``--grid``. Reported: vectors/s. The first grid point fills the collection; the others write
   into fresh collections of ``--grid-entities`` each.
2. Search: ``--queries`` top-5 searches, one client, one after another, through the same store's
   ``query`` (as ``dropvec search`` does) against the full collection. Reported: p50, p95, p99.

Starts its own embedded Milvus (``--milvus``, default: the settings' ``embedded_milvus``) on a
free port under a temporary folder. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
TEXT = "A chunk of about one hundred and twenty eight tokens of ordinary prose. " * 12


def nodes(count: int, rng: np.random.Generator, offset: int = 0) -> list[Any]:
    from llama_index.core.schema import TextNode

    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        TextNode(
            id_=f"bench-{offset + i}",
            text=TEXT,
            embedding=vectors[i].tolist(),
            metadata={
                "doc_id": f"doc-{(offset + i) // 100}",
                "embed_hash": f"{offset + i:032x}",
                "generation": 1,
            },
        )
        for i in range(count)
    ]


def write(settings: Any, count: int, batch_size: int, concurrency: int, seed: int) -> float:
    """Write ``count`` nodes into ``settings.collection`` (created anew); vectors/s."""
    from bench.core import drop_collection
    from dropvec.workers.loop import LoopThread
    from dropvec.workers.store import ChunkWriter, ensure_collection, open_store

    drop_collection(settings)
    ensure_collection(settings, DIM)
    tuned = settings.model_copy(update={"write_batch_size": batch_size, "write_concurrency": concurrency})
    rng = np.random.default_rng(seed)
    loop = LoopThread("bench-writer")

    async def opened() -> Any:
        return ChunkWriter(open_store(tuned, None, use_async=True), tuned)

    writer = loop.run(opened())
    elapsed = 0.0
    step = 5_000  # as a worker does: tasks of chunks, each written while the next is prepared
    try:
        for start in range(0, count, step):
            batch = nodes(min(step, count - start), rng, start)
            t = time.perf_counter()
            loop.run(writer.write(batch))
            elapsed += time.perf_counter() - t
    finally:
        loop.stop()
    return count / elapsed


def search_latency(settings: Any, queries: int, top_k: int = 5) -> list[float]:
    """Milliseconds per top-k search, one after another, through MilvusVectorStore.query."""
    from llama_index.core.vector_stores import VectorStoreQuery

    from dropvec.workers.store import open_store

    store = open_store(settings, None, use_async=False)
    rng = np.random.default_rng(7)
    timings = []
    for i in range(queries + 5):
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        t = time.perf_counter()
        result = store.query(VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=top_k))
        if i >= 5:  # the first few warm the connection and load the segments
            timings.append((time.perf_counter() - t) * 1000)
        assert len(result.nodes) == top_k
    return timings


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus", choices=["lite", "standalone"], default=None)
    parser.add_argument(
        "--grid", default="64x4,256x4,1024x4,256x1,256x8",
        help="batch-size x concurrency points of the write path, the first one fills the collection",
    )  # fmt: skip
    parser.add_argument("--grid-entities", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    from bench.core import drop_collection, private_settings, start_services

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-store-"))
    settings, _ = private_settings(root, own_milvus=True)
    if args.milvus:
        settings = settings.model_copy(update={"embedded_milvus": args.milvus})
    services = start_services(settings, redis=False)
    rows: list[dict[str, Any]] = []
    try:
        points = [tuple(int(x) for x in p.split("x")) for p in args.grid.split(",")]
        for n, (batch, concurrency) in enumerate(points):
            count = args.entities if n == 0 else args.grid_entities
            collection = settings.collection if n == 0 else f"{settings.collection}_{n}"
            target = settings.model_copy(update={"collection": collection})
            rate = write(target, count, batch, concurrency, seed=n)
            rows.append(
                {
                    "system": f"write path, batch {batch} x {concurrency} in flight",
                    "vectors": count,
                    "vectors_per_s": rate,
                }
            )
            if n == 0:
                timings = search_latency(settings, args.queries)
                rows.append(
                    {
                        "system": f"search top-5 at {args.entities} entities, one client",
                        "queries": len(timings),
                        "p50_ms": percentile(timings, 50),
                        "p95_ms": percentile(timings, 95),
                        "p99_ms": percentile(timings, 99),
                        "mean_ms": statistics.fmean(timings),
                    }
                )
            else:
                drop_collection(settings, collection)
    finally:
        for s in reversed(services):
            s.stop()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"Milvus: embedded {settings.embedded_milvus}, {DIM} dimensions, index {settings.index_type}")
    for row in rows:
        if "vectors_per_s" in row:
            print(f"{row['system']:44} {row['vectors']:8d} vectors {row['vectors_per_s']:9.0f} vectors/s")
        else:
            print(
                f"{row['system']:44} p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms"
                f"  p99 {row['p99_ms']:6.1f} ms"
            )


if __name__ == "__main__":
    main()
