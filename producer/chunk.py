"""Pure chunking: sections of a file in, chunks that fit the model's window out.

Sizes are measured in the embedding model's own tokens, on exactly the text the model will see
(the chunk plus whatever metadata is embedded with it, as built by ``config.messages.to_node``).
No service is touched here; ids are deterministic functions of the file and the chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode

from config.messages import Chunk, to_node

#: Embedded metadata may take at most this share of the window; past it, it is not embedded.
MAX_METADATA_SHARE = 8


class Tokens(Protocol):
    budget: int

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def split_to_fit(self, text: str, max_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class Section:
    """A piece of a file as a reader returns it (a page of a PDF, a section of Markdown)."""

    text: str
    metadata: dict[str, str | int | float] = field(default_factory=dict)


def sha256_hex(data: str | bytes) -> str:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def doc_id_for(file_key: str) -> str:
    """Identity of a file: stable across runs for the same path."""
    return sha256_hex(f"file:{file_key}")[:32]


def chunk_id(doc_id: str, index: int, content_hash: str) -> str:
    """Deterministic chunk id from the file's identity, the chunk's position and its content."""
    return sha256_hex(f"{doc_id}:{index}:{content_hash}")[:32]


def chunk_sections(
    sections: Iterable[Section],
    *,
    doc_id: str,
    file_metadata: dict[str, str | int | float],
    tokens: Tokens,
    chunk_size: int = 0,
    chunk_overlap: int = 16,
    embed_keys: tuple[str, ...] = (),
) -> list[Chunk]:
    """Split ``sections`` into chunks none of which exceeds the model's window.

    ``chunk_size`` 0 means the whole window. File metadata named in ``embed_keys`` is embedded
    with the text and counted against the window; if it would take more than 1/MAX_METADATA_SHARE
    of it, it is not embedded at all rather than shrinking every chunk to a sliver.
    """
    budget = tokens.budget
    target = min(chunk_size or budget, budget)
    meta_str = "\n".join(f"{k}: {file_metadata[k]}" for k in embed_keys if k in file_metadata)
    if not meta_str or tokens.count(meta_str) > budget // MAX_METADATA_SHARE:
        embed_keys = ()
    meta_tokens = tokens.count(meta_str + "\n\n") if embed_keys else 0
    text_size = max(1, target - meta_tokens)
    overlap = min(chunk_overlap, text_size // 4)
    splitter = SentenceSplitter(chunk_size=text_size, chunk_overlap=overlap, tokenizer=tokens.encode)

    chunks: list[Chunk] = []
    for section in sections:
        if not section.text.strip():
            continue
        metadata = {**section.metadata, **file_metadata}
        for piece in splitter.split_text(section.text):
            for text in _fit(piece, metadata, embed_keys, tokens, budget):
                index = len(chunks)
                content_hash = sha256_hex(text)
                chunks.append(
                    Chunk(
                        id=chunk_id(doc_id, index, content_hash),
                        index=index,
                        text=text,
                        metadata={**metadata, "chunk_index": index, "content_hash": content_hash},
                        embed_keys=embed_keys,
                    )
                )
    return chunks


def embedded_text(chunk: Chunk, doc_id: str = "") -> str:
    """Exactly what the model is given for ``chunk``."""
    return to_node(chunk, doc_id).get_content(metadata_mode=MetadataMode.EMBED)


def _fit(
    text: str,
    metadata: dict[str, str | int | float],
    embed_keys: tuple[str, ...],
    tokens: Tokens,
    budget: int,
) -> list[str]:
    """Guarantee the window on the real embedded string; re-cut at token boundaries if needed.

    The sentence splitter adds up token counts of pieces, which can differ by a token or two from
    the count of the joined text; this check is what makes "never longer than the window" hold.
    """
    if not text.strip():
        return []
    probe = Chunk(id="probe", index=0, text=text, metadata=metadata, embed_keys=embed_keys)
    excess = tokens.count(embedded_text(probe)) - budget
    if excess <= 0:
        return [text.strip()]
    room = tokens.count(text) - excess - 2
    out: list[str] = []
    for piece in tokens.split_to_fit(text, max(1, room)):
        out.extend(_fit(piece, metadata, embed_keys, tokens, budget))
    return out
