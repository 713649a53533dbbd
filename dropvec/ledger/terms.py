"""BM25's collection statistics (``dropvec.config.bm25``), per collection: how many documents
(chunks) it holds, their terms in all, and for each term how many hold it. Kept at
``{p}:terms:{collection}`` (term key → documents) and ``{p}:terms:{collection}:totals`` (``docs``,
``tokens``); counted as rows are written and removed, read by each search.

The totals exist only while the statistics count every row: set to zero as a collection is
created (``reset``), counted from the rows where Redis has none (``claim_fill``, then
``replace(..., only_if_missing=True)``) and afresh by ``check`` (``replace``). A change is applied
only to statistics that exist: one applied to none would make partial statistics look whole, and
a count from the rows that began before them would overwrite them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import redis

from dropvec.config.bm25 import TermCounts
from dropvec.config.errors import RedisUnavailable
from dropvec.config.settings import KEY_PREFIX
from dropvec.ledger import redis_boundary

# KEYS: the term counts, the totals. ARGV: docs, tokens, then key, change pairs (negative: rows
# removed). A term no document holds any more is dropped. 0: no statistics kept, nothing applied.
APPLY = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'docs', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])
for i = 3, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""

# KEYS: the counts being built, the term counts, the totals. ARGV: docs, tokens, and 1 where
# statistics kept meanwhile are left as they are (the counts built are dropped). 0: left.
INSTALL = """
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[3], 'docs', ARGV[1], 'tokens', ARGV[2])
return 1
"""

#: The longest one removal of a file's rows may hold that file's turn (a holder that died gives
#: it up after this long).
REMOVAL_TURN_SECONDS = 600

#: A worker counting the statistics from the rows renews its claim this often at least; one that
#: died gives it up after this long.
FILL_CLAIM_SECONDS = 60


@redis_boundary
class TermStats:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._apply = client.register_script(APPLY)
        self._install = client.register_script(INSTALL)

    @staticmethod
    def key(collection: str) -> str:
        return f"{KEY_PREFIX}:terms:{collection}"

    def _keys(self, collection: str) -> list[str]:
        return [self.key(collection), f"{self.key(collection)}:totals"]

    def apply(self, collection: str, change: TermCounts) -> bool:
        """Rows were written and removed: ``change`` holds what they added (removed: negative).
        False: Redis keeps no statistics of the collection (lost), nothing was applied."""
        pairs = [x for key, n in change.df.items() if n for x in (key, n)]
        if change.docs or change.tokens or pairs:
            return bool(self._apply(keys=self._keys(collection), args=[change.docs, change.tokens, *pairs]))
        return True

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

    @contextmanager
    def removing(self, collection: str, doc_id: str) -> Iterator[None]:
        """The rows of file ``doc_id`` are read, deleted and taken from the statistics by one
        caller at a time: two that read the same rows before either deleted them (a task dropped
        as its file went, and the removal of the file) would both take them off."""
        turn = self.r.lock(
            f"{self.key(collection)}:removing:{doc_id}",
            timeout=REMOVAL_TURN_SECONDS,
            blocking_timeout=REMOVAL_TURN_SECONDS,
        )
        try:
            acquired = turn.acquire()
        except redis.RedisError as exc:
            raise RedisUnavailable(f"Redis: {exc}") from exc
        if not acquired:  # (waited out like an outage)
            raise RedisUnavailable(
                f"Redis: no turn to remove the rows of {doc_id} in {REMOVAL_TURN_SECONDS} s"
            )
        try:
            yield
        finally:
            with suppress(redis.RedisError):  # (outlived its timeout, or Redis went: it expires)
                turn.release()

    def has_stats(self, collection: str) -> bool:
        return bool(self.r.exists(self._keys(collection)[1]))

    def claim_fill(self, collection: str) -> bool:
        """Whether this caller should count the terms of the collection's rows: Redis has none (a
        collection of an older dropvec, or Redis lost them) and no other worker is counting.
        The caller calls ``replace`` when done, or ``end_fill``."""
        return not self.has_stats(collection) and bool(
            self.r.set(self._claim(collection), 1, nx=True, ex=FILL_CLAIM_SECONDS)
        )

    def _claim(self, collection: str) -> str:
        return f"{self.key(collection)}:filling"

    def renew_fill(self, collection: str) -> None:
        """The caller of ``claim_fill`` is still counting."""
        self.r.expire(self._claim(collection), FILL_CLAIM_SECONDS)

    def end_fill(self, collection: str) -> None:
        self.r.delete(self._claim(collection))

    def replace(self, collection: str, counts: TermCounts, *, only_if_missing: bool = False) -> bool:
        """The statistics counted afresh from every row replace those kept; ``only_if_missing``:
        only where none are kept (a fill), else they are left. Whether they were replaced."""
        term_key, totals = self._keys(collection)
        building = f"{term_key}:building"
        self.r.delete(building)
        items = list(counts.df.items())
        for start in range(0, len(items), 10_000):
            self.r.hset(building, mapping=dict(items[start : start + 10_000]))
        try:
            return bool(
                self._install(
                    keys=[building, term_key, totals], args=[counts.docs, counts.tokens, int(only_if_missing)]
                )
            )
        finally:
            self.end_fill(collection)

    def reset(self, collection: str) -> None:
        """The collection is being created: nothing in it yet."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(collection))
        pipe.hset(self._keys(collection)[1], mapping={"docs": 0, "tokens": 0})
        pipe.execute()

    def forget(self, collection: str) -> None:
        """The statistics no longer count the collection's rows: none are kept until counted."""
        self.r.delete(*self._keys(collection))
