"""The set of embed hashes written to each collection: which vectors may be reused.

A hash not in the set was never written, so Milvus need not be asked for it (a look-up by hash
scans the rows not yet indexed). Kept at ``{p}:stored:{collection}``, 16 bytes a hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from dropvec.config.settings import KEY_PREFIX
from dropvec.ledger import redis_boundary


@redis_boundary
class StoredHashes:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def key(collection: str) -> str:
        return f"{KEY_PREFIX}:stored:{collection}"

    def may_be_stored(self, collection: str, embed_hashes: Sequence[str]) -> list[str]:
        """Those of ``embed_hashes`` that were written to ``collection`` (and may still be there).

        A hash not listed was never written, so Milvus need not be asked for it: its look-up
        scans growing segments, and costs more with every row stored.
        """
        if not embed_hashes:
            return []
        found = self.r.smismember(self.key(collection), [bytes.fromhex(h) for h in embed_hashes])
        return [h for h, hit in zip(embed_hashes, found, strict=True) if hit]  # type: ignore[arg-type]

    def add(self, collection: str, embed_hashes: Iterable[str]) -> None:
        members = {bytes.fromhex(h) for h in embed_hashes}
        if members:
            key = self.key(collection)
            # a set being rebuilt from the rows (``rebuild``) gets them too, first: it may replace
            # this one before the rows it is read from hold them
            if self.r.exists(f"{key}:rebuilding"):
                self.r.sadd(f"{key}:rebuilding", *members)
            self.r.sadd(key, *members)

    def forget(self, collection: str) -> None:
        """The collection was created afresh: nothing in it yet."""
        self.r.delete(self.key(collection))

    def claim_fill(self, collection: str) -> bool:
        """Whether this caller should fill the set from the collection: it has no set yet (made
        before dropvec kept one, or Redis lost it), and no other worker is filling it. The caller
        calls ``end_fill`` when done."""
        key = self.key(collection)
        return not self.r.exists(key) and bool(self.r.set(f"{key}:filling", 1, nx=True, ex=3600))

    def end_fill(self, collection: str) -> None:
        self.r.delete(f"{self.key(collection)}:filling")

    def rebuild(self, collection: str) -> HashRebuild:
        """A set built afresh from the rows (``check``): hashes added as the rows are read, and
        ``commit`` puts it in the old one's place, so that hashes of removed rows are gone."""
        return HashRebuild(self.r, self.key(collection))


@redis_boundary
class HashRebuild:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self.r, self.key, self.building = client, key, f"{key}:rebuilding"
        self.r.delete(self.building)

    def add(self, embed_hashes: Iterable[str]) -> None:
        members = {bytes.fromhex(h) for h in embed_hashes if h}
        if members:
            self.r.sadd(self.building, *members)

    def commit(self) -> None:
        """The new set replaces the old (an empty one: no set, which the workers fill again)."""
        if self.r.exists(self.building):
            self.r.rename(self.building, self.key)
        else:
            self.r.delete(self.key)
