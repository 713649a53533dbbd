"""The retrieval benchmark: does a search put the passage that answers a question in its top 5?

    .venv/bin/python -m bench.retrieval [--json] [--embed-keys file_name,header_path]

The seed and public corpora are copied into one folder and indexed by dropvec itself (``ingest``
with the default worker layout, into a private Valkey and Milvus Lite). Then each question of
``bench/retrieval.json`` (checked by ``bench.check_retrieval``: each answer is a verbatim passage
of its file) is searched in every mode and fusion below. Reported per configuration, overall and
per kind of question (paraphrase, keyword, fact):
- file@5: a top-5 chunk is of the question's file;
- passage@5: a top-5 chunk holds the passage (or, where the passage straddles two chunks, its
  first or last 24 characters), in the question's file;
- MRR@10 of that passage;
- the search's own latency in Milvus, p50 and p95, one client (the question's embedding, which
  every mode but sparse needs, is timed apart: p50 in the header).
Configurations: dense; sparse (BM25); hybrid with RRF at several constants and candidate depths;
hybrid with the weighted ranker at several dense weights. The defaults (``Settings``) are marked.
``--embed-keys`` embeds those file and section metadata with each chunk; ``--chunk-size`` and
``--chunk-overlap`` set the chunks' size and overlap (each a separate index). ``--rerank-model``
adds the default hybrid search reranked by that cross-encoder (its latency includes the
reranking). ``--embed-model`` indexes with another model (its chunks/s in the header);
``--asked-only`` indexes only the files that questions ask about, to compare slow models in
minutes (fewer distractors: compare runs of the same folder); ``--max-file-chunks N`` keeps of
those only the files of at most N chunks, and their questions.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.check_retrieval import CORPORA, KINDS, QUESTIONS, collapse
from bench.core import end_to_end, private_settings, start_services
from bench.store import percentile

TOP, DEEP = 5, 10
#: (label, settings overrides): every configuration measured.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("dense", {"search_mode": "dense"}),
    ("sparse (BM25)", {"search_mode": "sparse"}),
    *[
        (f"hybrid rrf k={k} depth={d}", {"search_mode": "hybrid", "search_ranker": "rrf",
                                          "rrf_k": k, "search_depth": d})
        for k in (10, 30, 60)
        for d in (20, 50, 100)
    ],
    *[
        (f"hybrid weighted dense={w} depth={d}", {"search_mode": "hybrid", "search_ranker": "weighted",
                                                  "dense_weight": w, "search_depth": d})
        for w in (0.3, 0.5, 0.7)
        for d in (20, 50)
    ],
]  # fmt: skip


@dataclass
class Question:
    path: str  # the file's path in the indexed folder
    kind: str
    question: str
    answer: str


def questions(folder: Path) -> list[Question]:
    return [
        Question(str(folder / q["corpus"] / q["path"]), q["kind"], q["question"], collapse(q["answer"]))
        for q in json.loads(QUESTIONS.read_text())
    ]


def answers(q: Question, text: str) -> bool:
    chunk = collapse(text)
    return q.answer in chunk or q.answer[:24] in chunk or q.answer[-24:] in chunk


def measure(settings: Any, asked: list[Question], vectors: list[list[float]]) -> dict[str, Any]:
    from dropvec.search import query_terms
    from dropvec.workers.rerank import rerank
    from dropvec.workers.store import Retrieval, read_store, retrieve

    read_store(settings)
    depth = max(DEEP, settings.rerank_depth) if settings.rerank_model else DEEP
    ranks: list[int | None] = []
    files: list[bool] = []
    timings: list[float] = []
    for q, vector in zip(asked, vectors, strict=True):
        began = time.perf_counter()
        terms = query_terms(settings, q.question) if settings.search_mode != "dense" else None
        found = retrieve(settings, Retrieval(settings.search_mode, vector, terms, depth))
        if settings.rerank_model:
            found = rerank(settings, q.question, found, DEEP)
        timings.append((time.perf_counter() - began) * 1000)
        paths = [str(n.node.metadata.get("file_path", "")) for n in found]
        files.append(q.path in paths[:TOP])
        hits = [
            r
            for r, (n, p) in enumerate(zip(found, paths, strict=True), 1)
            if p == q.path and answers(q, n.node.get_content())
        ]
        ranks.append(hits[0] if hits else None)
    row: dict[str, Any] = {"p50_ms": percentile(timings, 50), "p95_ms": percentile(timings, 95)}
    for kind in ("all", *KINDS):
        mine = [i for i, q in enumerate(asked) if kind in ("all", q.kind)]
        row[kind] = {
            "n": len(mine),
            "file@5": statistics.fmean(files[i] for i in mine),
            "passage@5": statistics.fmean((ranks[i] or DEEP + 1) <= TOP for i in mine),
            "mrr@10": statistics.fmean(1 / r if (r := ranks[i]) else 0.0 for i in mine),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embed-keys", default="", help="metadata embedded with each chunk, comma-separated")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="tokens per chunk (default: the settings')"
    )
    parser.add_argument("--embed-model", default=None, help="the embedding model, name or path")
    parser.add_argument("--asked-only", action="store_true", help="index only the files asked about")
    parser.add_argument(
        "--max-file-chunks", type=int, default=0, help="with --asked-only: smaller files only"
    )
    parser.add_argument("--rerank-model", default="", help="a cross-encoder to measure, name or path")
    parser.add_argument(
        "--chunk-overlap", type=int, default=None, help="tokens shared by neighbouring chunks"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    from dropvec.config.settings import Settings
    from dropvec.workers.embed import load_embedder

    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-retrieval-"))
    settings, _ = private_settings(root, own_milvus=True)
    keys = tuple(k for k in args.embed_keys.split(",") if k)
    chunking = {"chunk_size": args.chunk_size} if args.chunk_size is not None else {}
    if args.embed_model:
        chunking["embed_model"] = args.embed_model
    if args.chunk_overlap is not None:
        chunking["chunk_overlap"] = args.chunk_overlap
    settings = settings.model_copy(update={"embed_metadata_keys": keys, "max_queue_depth": 10**6, **chunking})
    folder = root / "corpus"
    for name, source in CORPORA.items():
        shutil.copytree(source, folder / name)
    if args.asked_only:
        wanted = {folder / q["corpus"] / q["path"] for q in json.loads(QUESTIONS.read_text())}
        if args.max_file_chunks:
            from bench.core import file_chunks

            bundled = settings.model_copy(
                update={"embed_model": Settings().embed_model}
            )  # (same files for any model)
            wanted = {p for p in wanted if sum(1 for _ in file_chunks(bundled, p)) <= args.max_file_chunks}
        for path in [p for p in folder.rglob("*") if p.is_file() and p not in wanted]:
            path.unlink()
    asked = [q for q in questions(folder) if Path(q.path).exists()]
    services = start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        chunks, seconds, *_ = end_to_end(settings, [folder], settings.worker_processes(), root)
        model = load_embedder(settings)
        began = time.perf_counter()
        vectors = [model.get_query_embedding(q.question) for q in asked]
        embed_ms = (time.perf_counter() - began) * 1000 / len(asked)
        defaults = Settings()
        for label, overrides in CONFIGS:
            tuned = settings.model_copy(update=overrides)
            default = (
                all(getattr(defaults, k) == v for k, v in overrides.items())
                and overrides.get("search_mode") == defaults.search_mode
            )
            rows.append({"system": label, "default": default, **measure(tuned, asked, vectors)})
        if args.rerank_model:
            tuned = settings.model_copy(update={"rerank_model": args.rerank_model})
            row = measure(tuned, asked, vectors)
            rows.append({"system": "hybrid defaults + rerank", "default": False, **row})
    finally:
        for s in reversed(services):
            s.stop(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(
        f"{len(asked)} questions over {chunks} chunks (indexed in {seconds:.0f} s, {chunks / seconds:.1f}"
        f" chunks/s, {os.cpu_count()} cores, {settings.embed_model}, {settings.resolved_backend()});"
        f" question embedding {embed_ms:.1f} ms each; embedded metadata: {keys or 'none'};"
        f" {settings.chunk_size}-token chunks, {settings.chunk_overlap} shared"
    )
    header = f"{'configuration':38} " + " ".join(f"{k[:5]:>17}" for k in ("all", *KINDS))
    print(header + "   p50 ms  p95 ms")
    print(f"{'':38} " + " ".join(f"{'file passage MRR':>17}" for _ in ("all", *KINDS)))
    for row in rows:
        cells = " ".join(
            f"{row[k]['file@5']:5.2f} {row[k]['passage@5']:5.2f} {row[k]['mrr@10']:5.2f}"
            for k in ("all", *KINDS)
        )
        mark = " *" if row["default"] else ""
        print(f"{row['system'] + mark:38} {cells} {row['p50_ms']:8.1f} {row['p95_ms']:7.1f}")


if __name__ == "__main__":
    main()
