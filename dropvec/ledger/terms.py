"""BM25's collection statistics (``dropvec.config.bm25``), per collection: how many documents
(chunks) it holds, their terms in all, and for each term how many hold it. Kept at
``{p}:terms:{collection}`` (term key → documents) and ``{p}:terms:{collection}:totals`` (``docs``,
``tokens``); counted as rows are written and removed, read by each search. Rebuilt from the rows
where Redis has none (``claim_fill``) and by ``check`` (``replace``)."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from dropvec.config.bm25 import TermCounts
from dropvec.config.settings import KEY_PREFIX
from dropvec.ledger import redis_boundary

# KEYS: the term counts, the totals. ARGV: docs, tokens, then key, change pairs (negative: rows
# removed). A term no document holds any more is dropped.
APPLY = """
redis.call('HINCRBY', KEYS[2], 'docs', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])
for i = 3, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
"""


@redis_boundary
class TermStats:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._apply = client.register_script(APPLY)

    @staticmethod
    def key(collection: str) -> str:
        return f"{KEY_PREFIX}:terms:{collection}"

    def _keys(self, collection: str) -> list[str]:
        return [self.key(collection), f"{self.key(collection)}:totals"]

    def apply(self, collection: str, change: TermCounts) -> None:
        """Rows were written and removed: ``change`` holds what they added (removed: negative)."""
        pairs = [x for key, n in change.df.items() if n for x in (key, n)]
        if change.docs or change.tokens or pairs:
            self._apply(keys=self._keys(collection), args=[change.docs, change.tokens, *pairs])

    def totals(self, collection: str) -> tuple[int, int]:
        """Documents and their tokens in all."""
        docs, tokens = self.r.hmget(self._keys(collection)[1], ["docs", "tokens"])  # type: ignore[misc]
        return max(int(docs or 0), 0), max(int(tokens or 0), 0)

    def avgdl(self, collection: str) -> float:
        """The mean document length in terms (0: no documents yet)."""
        return TermCounts(*self.totals(collection)).mean_length()

    def document_frequencies(self, collection: str, keys: Iterable[int]) -> tuple[int, dict[int, int]]:
        """Documents in all, and how many hold each of ``keys`` (those none holds left out)."""
        keys = list(keys)
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self._keys(collection)[1], "docs")
        if keys:
            pipe.hmget(self.key(collection), keys)
        docs, *found = pipe.execute()
        counts = found[0] if found else []
        return max(int(docs or 0), 0), {k: int(n) for k, n in zip(keys, counts, strict=True) if n}

    def has_stats(self, collection: str) -> bool:
        return bool(self.r.exists(self._keys(collection)[1]))

    def claim_fill(self, collection: str) -> bool:
        """Whether this caller should count the terms of the collection's rows: Redis has none (a
        collection of an older dropvec, or Redis lost them) and no other worker is counting.
        The caller calls ``replace`` when done, or ``end_fill``."""
        return not self.has_stats(collection) and bool(
            self.r.set(f"{self.key(collection)}:filling", 1, nx=True, ex=3600)
        )

    def end_fill(self, collection: str) -> None:
        self.r.delete(f"{self.key(collection)}:filling")

    def replace(self, collection: str, counts: TermCounts) -> None:
        """The statistics counted afresh from every row replace those kept."""
        term_key, totals = self._keys(collection)
        building = f"{term_key}:building"
        self.r.delete(building)
        items = list(counts.df.items())
        for start in range(0, len(items), 10_000):
            self.r.hset(building, mapping=dict(items[start : start + 10_000]))
        pipe = self.r.pipeline(transaction=True)
        if items:
            pipe.rename(building, term_key)
        else:
            pipe.delete(term_key)
        pipe.hset(totals, mapping={"docs": counts.docs, "tokens": counts.tokens})
        pipe.execute()
        self.end_fill(collection)

    def forget(self, collection: str) -> None:
        """The collection was created afresh: nothing in it yet."""
        self.r.delete(*self._keys(collection))
