"""Deterministic ids: of a file (its path), of a chunk (file, version, position, content).

Core: imports nothing of dropvec's. Producer, ledger and workers all key their records by these.
"""

from __future__ import annotations

import hashlib


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
