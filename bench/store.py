"""Milvus alone: the write path with precomputed vectors, and search latency, as the collection
grows to 1M entities.

    .venv/bin/python -m bench.store [--at 100000,500000,1000000] [--milvus lite|standalone]
        [--grid 256x4,64x4,...] [--texts public] [--json]

1. Fill: nodes with random unit vectors (384 dimensions) and chunk-sized text are written
   through dropvec's own ``ChunkWriter`` (llama-index ``MilvusVectorStore`` ``async_add``
   batches, ``write_concurrency`` in flight; BM25's document side made from each text), with the
   first point of ``--grid`` (batch size x concurrency; the default settings' 256 x 4), up to
   each size in ``--at``; after each task's writes, what they add to BM25's statistics goes to
   the ledger, as a worker does (both timed). At each size:
   - writes: vectors/s over the last ``--window`` entities written before it;
   - search: ``--queries`` top-5 searches, one client, one after another, through the same
     store's ``query`` (as the tutorial's retriever does). Reported: p50, p95, p99;
   - with ``--texts public`` (the chunks' texts are then the public corpus's own, cut by the
     producer and repeated as needed, rather than one sentence): dropvec's hybrid and BM25
     searches (``store.retrieve``, as ``dropvec search`` runs them, the query's IDF read from the
     ledger included) of the retrieval benchmark's questions, with random query vectors: the
     question's embedding is not included;
   - the two look-ups a worker makes: stored vectors by 128 embed hashes (reuse), and the
     removal of a file's 100 rows by ``doc_id`` (as an edit or delete does). Reported: p50, p95.
2. The other points of ``--grid`` write ``--grid-entities`` each into fresh collections.

Starts its own Valkey and embedded Milvus (``--milvus``, default: the settings' ``embedded_milvus``)
on free ports under a temporary folder. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
TEXT = "A chunk of about one hundred and twenty eight tokens of ordinary prose. " * 12


def nodes(count: int, rng: np.random.Generator, offset: int = 0, texts: list[str] | None = None) -> list[Any]:
    from llama_index.core.schema import TextNode

    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        TextNode(
            id_=f"bench-{offset + i}",
            text=texts[(offset + i) % len(texts)] if texts else TEXT,
            embedding=vectors[i].tolist(),
            metadata={
                "doc_id": f"doc-{(offset + i) // 100}",
                "file_path": f"/inbox/folder-{(offset + i) // 10_000}/file-{(offset + i) // 100}.txt",
                "file_type": "txt",
                "modified": 1_700_000_000 + (offset + i) // 100,
                "chunk_index": (offset + i) % 100,
                "embed_hash": f"{offset + i:032x}",
                "generation": 1,
            },
        )
        for i in range(count)
    ]


def write(
    settings: Any,
    sizes: list[int],
    batch_size: int,
    concurrency: int,
    seed: int,
    window: int = 50_000,
    texts: list[str] | None = None,
) -> Iterator[tuple[int, float]]:
    """Fill ``settings.collection`` (created anew) up to each of ``sizes`` in turn, yielding at
    each the size and the vectors/s of the last ``window`` entities written before it."""
    from bench.core import drop_collection
    from dropvec.ledger.state import StateStore
    from dropvec.workers.loop import LoopThread
    from dropvec.workers.store import ensure_collection

    drop_collection(settings)
    ensure_collection(settings, DIM)
    terms = StateStore.from_settings(settings).terms
    terms.reset(settings.collection)
    tuned = settings.model_copy(update={"write_batch_size": batch_size, "write_concurrency": concurrency})
    rng = np.random.default_rng(seed)
    loop = LoopThread("bench-writer")
    writer = loop.run(_opened(tuned))
    step = 5_000  # as a worker does: tasks of chunks, each written while the next is prepared
    written, timed = 0, []
    try:
        for size in sizes:
            while written < size:
                batch = nodes(min(step, size - written), rng, written, texts)
                t = time.perf_counter()
                writer.set_avgdl(terms.avgdl(settings.collection))
                loop.run(writer.write(batch, maybe_stored=False))  # (a task's first run)
                terms.apply(settings.collection, writer.take_terms())
                timed.append((len(batch), time.perf_counter() - t))
                written += len(batch)
            last, seconds = 0, 0.0
            for count, elapsed in reversed(timed):
                if last >= window:
                    break
                last, seconds = last + count, seconds + elapsed
            yield size, last / seconds
    finally:
        loop.stop()


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


def text_search_latency(settings: Any, questions: list[str], mode: str, top_k: int = 5) -> list[float]:
    """Milliseconds per dropvec search (``store.retrieve``, the query's IDF read from the ledger)
    of each question, random query vectors."""
    from dropvec.search import query_terms
    from dropvec.workers.store import Retrieval, read_store, retrieve

    read_store(settings)
    rng = np.random.default_rng(13)
    timings = []
    for i, question in enumerate([*questions[:5], *questions]):
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        t = time.perf_counter()
        terms = query_terms(settings, question)
        found = retrieve(settings, Retrieval(mode, vector.tolist(), terms, top_k))
        if i >= 5:
            timings.append((time.perf_counter() - t) * 1000)
        assert len(found) == top_k
    return timings


def public_texts(settings: Any) -> list[str]:
    """The public corpus's chunks, as the producer cuts them."""
    from bench.check_retrieval import CORPORA
    from bench.core import chunk_texts

    return chunk_texts(settings, sorted(p for p in CORPORA["public"].rglob("*") if p.is_file()))


def lookups(settings: Any, filled: int, rounds: int = 20) -> dict[str, list[float]]:
    """Milliseconds per reuse look-up (128 stored hashes) and per removal of one file's rows."""
    from dropvec.workers.loop import LoopThread

    rng = np.random.default_rng(11)
    loop = LoopThread("bench-lookups")
    writer = loop.run(_opened(settings))
    found, removed = [], []
    try:
        for _ in range(rounds):
            hashes = [f"{int(i):032x}" for i in rng.integers(0, filled, 128)]
            t = time.perf_counter()
            loop.run(writer.stored_vectors(hashes))
            found.append((time.perf_counter() - t) * 1000)
            doc = f"doc-{int(rng.integers(0, filled // 100))}"
            t = time.perf_counter()
            loop.run(writer.remove(doc, below_generation=2))
            removed.append((time.perf_counter() - t) * 1000)
    finally:
        loop.stop()
    return {"reuse look-up of 128 hashes": found, "removal of one file's 100 rows": removed}


async def _opened(settings: Any) -> Any:
    from dropvec.workers.store import ChunkWriter, open_store

    return ChunkWriter(open_store(settings, None, use_async=True), settings)


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--at", default="100000", help="collection sizes to measure at, comma-separated")
    parser.add_argument("--window", type=int, default=50_000, help="entities the write rate is taken over")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus", choices=["lite", "standalone"], default=None)
    parser.add_argument(
        "--grid", default="256x4,64x4,1024x4,256x1,256x8",
        help="batch-size x concurrency points of the write path, the first one fills the collection",
    )  # fmt: skip
    parser.add_argument("--grid-entities", type=int, default=20_000)
    parser.add_argument(
        "--texts",
        choices=["sentence", "public"],
        default="sentence",
        help="the chunks' texts: one sentence repeated, or the public corpus's chunks",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    from bench.core import drop_collection, private_settings, start_services

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-store-"))
    settings, _ = private_settings(root, own_milvus=True)
    if args.milvus:
        settings = settings.model_copy(update={"embedded_milvus": args.milvus})
    services = start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        points = [tuple(int(x) for x in p.split("x")) for p in args.grid.split(",")]
        batch, concurrency = points[0]
        sizes = sorted(int(x) for x in args.at.split(","))
        texts = public_texts(settings) if args.texts == "public" else None
        from bench.check_retrieval import QUESTIONS

        questions = [q["question"] for q in json.loads(QUESTIONS.read_text())]
        for size, rate in write(settings, sizes, batch, concurrency, seed=0, window=args.window, texts=texts):
            rows.append(
                {
                    "system": f"writes up to {size} entities, batch {batch} x {concurrency}",
                    "entities": size,
                    "vectors": min(args.window, size),
                    "vectors_per_s": rate,
                }
            )
            timed = {"search top-5, one client": search_latency(settings, args.queries)}
            if texts:
                for mode in ("hybrid", "sparse"):
                    timed[f"dropvec {mode} search top-5"] = text_search_latency(settings, questions, mode)
            timed.update(lookups(settings, size))
            for what, timings in timed.items():
                rows.append(
                    {
                        "system": f"{what} at {size} entities",
                        "entities": size,
                        "queries": len(timings),
                        "p50_ms": percentile(timings, 50),
                        "p95_ms": percentile(timings, 95),
                        "p99_ms": percentile(timings, 99),
                        "mean_ms": statistics.fmean(timings),
                    }
                )
        drop_collection(settings)
        for n, (batch, concurrency) in enumerate(points[1:], start=1):
            target = settings.model_copy(update={"collection": f"{settings.collection}_{n}"})
            [(_, rate)] = write(target, [args.grid_entities], batch, concurrency, seed=n)
            rows.append(
                {
                    "system": f"write path, batch {batch} x {concurrency} in flight",
                    "vectors": args.grid_entities,
                    "vectors_per_s": rate,
                }
            )
            drop_collection(target)
    finally:
        for s in reversed(services):
            s.stop()
        shutil.rmtree(root, ignore_errors=True)  # (Milvus Lite's file keeps its size: GBs at 1M)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(
        f"Milvus: embedded {settings.embedded_milvus}, {DIM} dimensions, index {settings.index_type},"
        f" texts: {args.texts}"
    )
    for row in rows:
        if "vectors_per_s" in row:
            print(f"{row['system']:52} {row['vectors']:8d} vectors {row['vectors_per_s']:9.0f} vectors/s")
        else:
            print(
                f"{row['system']:52} p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms"
                f"  p99 {row['p99_ms']:6.1f} ms"
            )


if __name__ == "__main__":
    main()
