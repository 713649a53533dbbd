"""Deterministic ids: of a file (its path), of a chunk (file, version, position, content).

Core: imports nothing of dropvec's. Producer, ledger and workers all key their records by these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def sha256_hex(data: str | bytes) -> str:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def doc_id_for(file_key: str) -> str:
    """Identity of a file: stable across runs for the same path."""
    return sha256_hex(f"file:{file_key}")[:32]


def chunk_id(doc_id: str, generation: int, index: int, content_hash: str) -> str:
    """Deterministic chunk id from the file's identity and version, the chunk's position and content.

    Each version (``generation``) of a file has ids of its own, so writing a new version never
    overwrites rows of the one being replaced, and a late task of an old version cannot clobber
    the new one.
    """
    return sha256_hex(f"{doc_id}:{generation}:{index}:{content_hash}")[:32]


def ids_digest(ids: Iterable[str], start: str = "") -> str:
    """An order-free fingerprint of a set of chunk ids (128 bits): two sets of distinct ids have
    the same digest only by chance. ``start``: a digest to add ``ids`` to (a file's tasks one by
    one). What the ledger keeps of each file version, to be compared with what the store holds."""
    total = int(start, 16) if start else 0
    for i in ids:
        total += int.from_bytes(hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    return f"{total % 2**128:032x}"
