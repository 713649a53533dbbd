"""A worker's model under batches of every shape: its RSS as it goes, which must level off.

    .venv/bin/python -m bench.memory [--batches 600] [--every 50] [--json]

Loads the embedding model as a worker does (the configured backend, the worker's threads) and
embeds ``--batches`` batches of random size (1 to the batch size) and random length (5 to 200
words of the seed essay), the mix a worker sees from files of every size. Prints the process's
RSS after loading and every ``--every`` batches, with the seconds so far. Asserts nothing: a
runtime that keeps one compiled kernel per input shape shows here as a line that never flattens.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import psutil

from bench.core import SEED
from dropvec.config.settings import Settings
from dropvec.workers.embed import load_embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    model = load_embedder(settings)
    words = (SEED / "paul_graham_essay.txt").read_text().split()
    size = settings.batch_size()
    rng = random.Random(1)
    me = psutil.Process()

    def rss_mb() -> float:
        return round(me.memory_info().rss / 2**20, 1)

    points = [{"batches": 0, "seconds": 0.0, "rss_mb": rss_mb()}]
    start = time.perf_counter()
    for n in range(1, args.batches + 1):
        texts = [" ".join(rng.sample(words, rng.randint(5, 200))) for _ in range(rng.randint(1, size))]
        model.get_text_embedding_batch(texts)
        if n % args.every == 0:
            seconds = round(time.perf_counter() - start, 1)
            points.append({"batches": n, "seconds": seconds, "rss_mb": rss_mb()})
            if not args.json:
                print(f"{n:6d} batches {seconds:7.1f} s  RSS {points[-1]['rss_mb']:7.1f} MB", flush=True)
    result = {"backend": settings.resolved_backend(), "batch_size": size, "points": points}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['backend']}: loaded {points[0]['rss_mb']} MB, end {points[-1]['rss_mb']} MB")


if __name__ == "__main__":
    main()
