"""The performance harness's arithmetic: which peer is the strongest, and what is compared."""

import argparse

import pytest

from bench.perf import PEERS, batch_sizes, compare


def row(system: str, chunks: int, seconds: float, **more: object) -> dict[str, object]:
    return {"system": system, "chunks": chunks, "seconds": seconds, **more}


def test_the_strongest_peer_is_the_one_of_least_corpus_seconds_not_most_chunks_a_second() -> None:
    rows = compare([
        row("ceiling: openvino encode, 2 processes x 1 thread", 1000, 10.0, key="ceiling",
            runs_chunks_per_s=[100.0]),
        row("dropvec end to end, 2 worker processes", 1000, 11.0),
        # more chunks a second, but its splitter made twice the chunks: the slower peer on the corpus
        row(f"{PEERS['pipeline']}, batch 32", 2000, 25.0),
        row(f"{PEERS['pipeline-int8']}, batch 1", 900, 20.0),
        row("sentence-transformers int8 recipe encode, batch 1", 1000, 5.0),  # (an encode, not a peer)
    ])  # fmt: skip
    dropvec = rows[1]
    assert dropvec["best_peer"] == f"{PEERS['pipeline-int8']}, batch 1"
    assert dropvec["time_to_best_peer"] == pytest.approx(11.0 / 20.0)
    assert dropvec["ratio_to_best_peer"] == pytest.approx((1000 / 11.0) / (900 / 20.0))
    assert dropvec["ratio_to_ceiling"] == pytest.approx(10.0 / 11.0)
    assert "time_to_best_peer" not in rows[0] and "time_to_best_peer" not in rows[2]


def test_without_peers_nothing_is_compared_to_one() -> None:
    (dropvec,) = compare([row("dropvec end to end, 1 worker process", 100, 2.0)])
    assert dropvec["ratio_to_best_peer"] is None and "time_to_best_peer" not in dropvec


def test_peer_batch_sizes_are_a_comma_separated_list_of_positive_counts() -> None:
    assert batch_sizes("1,32") == (1, 32)
    assert batch_sizes("8") == (8,)
    for bad in ("", "0", "1,x", "-4"):
        with pytest.raises(argparse.ArgumentTypeError):
            batch_sizes(bad)
