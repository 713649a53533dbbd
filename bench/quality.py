"""The quality gate: retrieval with each embedding backend on a labelled question set.

    .venv/bin/python -m bench.quality [--files F ...] [--backends torch,onnx,onnx-int8] [--json]

``bench/questions.json`` holds questions on the seed corpus, each with the exact passage of its
file that answers it. The files are read and chunked as dropvec does; every backend embeds every
chunk and question; a question is answered when a chunk holding its passage ranks in the top 5
among all chunks of all files (exact cosine search). Reported per backend: recall@5, MRR, chunks/s
of the backend's own encode, and the mean and minimum cosine of its chunk vectors to torch fp32's.

The gate: the fast backend ships as the default only if its recall@5 is within 1 point of fp32's.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import SEED

QUESTIONS = Path(__file__).with_name("questions.json")
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
TOP_K = 5
#: The gate: the fast backend's recall@5 may be at most this far under fp32's.
MAX_RECALL_LOSS = 0.01


@dataclass
class Labelled:
    chunks: list[str]
    questions: list[str]
    relevant: list[set[int]]  # per question: the chunks that hold its passage


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def labelled_set(settings: Any, files: list[Path]) -> Labelled:
    """The chunks of ``files`` and the questions on them, each with the chunks that answer it: those
    holding its whole passage or, when the passage straddles two chunks, its first or last 24
    characters."""
    from bench.core import chunk_texts

    chunks: list[str] = []
    owner: list[str] = []
    for f in files:
        texts = chunk_texts(settings, [f])
        chunks += texts
        owner += [f.name] * len(texts)
    flat = [_squash(c) for c in chunks]
    names = {f.name for f in files}
    questions, relevant = [], []
    for q in json.loads(QUESTIONS.read_text()):
        if q["file"] not in names:
            continue
        answer = _squash(q["answer"])
        mine = [i for i, name in enumerate(owner) if name == q["file"]]
        hits = {i for i in mine if answer in flat[i]}
        if not hits:
            hits = {i for i in mine if answer[:24] in flat[i] or answer[-24:] in flat[i]}
        if not hits:
            raise SystemExit(f"no chunk of {q['file']} holds the answer to {q['question']!r}")
        questions.append(q["question"])
        relevant.append(hits)
    return Labelled(chunks, questions, relevant)


def score(labelled: Labelled, chunk_vectors: np.ndarray, question_vectors: np.ndarray) -> dict[str, float]:
    """recall@5 and MRR of exact cosine search (the vectors are normalised)."""
    ranks = []
    for q, vector in enumerate(question_vectors):
        order = np.argsort(-(chunk_vectors @ vector), kind="stable")
        rank = next(r for r, i in enumerate(order, 1) if int(i) in labelled.relevant[q])
        ranks.append(rank)
    return {
        "recall_at_5": float(np.mean([r <= TOP_K for r in ranks])),
        "mrr": float(np.mean([1 / r for r in ranks])),
    }


def embed(settings: Any, backend: str, labelled: Labelled) -> tuple[np.ndarray, np.ndarray, float]:
    """Chunk and question vectors from ``backend``, and its chunks/s (its own batched encode)."""
    from dropvec.workers.embed import load_embedder

    model = load_embedder(settings.model_copy(update={"embed_backend": backend}))
    model.get_text_embedding_batch(labelled.chunks[:8])  # warm up
    start = time.perf_counter()
    chunks = np.array(model.get_text_embedding_batch(labelled.chunks), dtype=np.float32)
    rate = len(labelled.chunks) / (time.perf_counter() - start)
    questions = np.array([model.get_query_embedding(q) for q in labelled.questions], dtype=np.float32)
    return chunks, questions, rate


def run(settings: Any, files: list[Path], backends: tuple[str, ...] = BACKENDS) -> list[dict[str, Any]]:
    """One row per backend; the first backend is the reference the others are compared to."""
    labelled = labelled_set(settings, files)
    rows = []
    reference: np.ndarray | None = None
    for backend in backends:
        chunks, questions, rate = embed(settings, backend, labelled)
        if reference is None:
            reference = chunks
        cosine = (chunks * reference).sum(axis=1)
        rows.append(
            {
                "system": f"quality, {backend}",
                "backend": backend,
                "questions": len(labelled.questions),
                "chunks": len(labelled.chunks),
                "chunks_per_s": rate,
                **score(labelled, chunks, questions),
                "cosine_to_reference_mean": float(cosine.mean()),
                "cosine_to_reference_min": float(cosine.min()),
            }
        )
    for row in rows[1:]:
        row["gate_holds"] = row["recall_at_5"] >= rows[0]["recall_at_5"] - MAX_RECALL_LOSS
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    print(f"{first['questions']} questions over {first['chunks']} chunks; reference: {first['backend']}")
    print(f"{'backend':10} {'recall@5':>8} {'MRR':>6} {'chunks/s':>8} {'cos mean':>8} {'cos min':>8}  gate")
    for r in rows:
        gate = {True: "holds", False: "FAILS"}.get(r.get("gate_holds"), "(reference)")  # type: ignore[arg-type]
        print(
            f"{r['backend']:10} {r['recall_at_5']:8.3f} {r['mrr']:6.3f} {r['chunks_per_s']:8.1f} "
            f"{r['cosine_to_reference_mean']:8.4f} {r['cosine_to_reference_min']:8.4f}  {gate}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", nargs="*", type=Path, default=sorted(SEED.iterdir()))
    parser.add_argument("--backends", default=",".join(BACKENDS), help="the first is the reference")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()

    from dropvec.config.settings import Settings

    settings = Settings(log_level="WARNING")
    settings.prepare_environment()
    rows = run(settings, [f.absolute() for f in args.files], tuple(args.backends.split(",")))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_rows(rows)


if __name__ == "__main__":
    main()
