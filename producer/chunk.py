"""Pure chunking: sections of a file in, chunks that fit the model's window out.

Sizes are measured in the embedding model's own tokens, on exactly the text the model will see
(the chunk plus whatever metadata is embedded with it, as built by ``config.messages.to_node``).
No service is touched here; ids are deterministic functions of the file and the chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode

from config.messages import Chunk, to_node

#: Embedded metadata may take at most this share of the window; past it, it is not embedded.
MAX_METADATA_SHARE = 8
#: Long sections are split in blocks of about this many characters, cut at blank lines.
BLOCK_CHARS = 8_000


class Tokens(Protocol):
    @property
    def budget(self) -> int: ...

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


def iter_chunks(
    sections: Iterable[Section],
    *,
    doc_id: str,
    file_metadata: dict[str, str | int | float],
    tokens: Tokens,
    chunk_size: int = 0,
    chunk_overlap: int = 16,
    embed_keys: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    """Split ``sections`` into chunks none of which exceeds the model's window, lazily.

    Long sections are first cut into blocks at paragraph breaks, so that the first chunks of a
    long file are ready (and can be embedded) before the rest is split.

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

    index = 0
    for section in sections:
        metadata = {**section.metadata, **file_metadata}
        for block in paragraph_blocks(section.text):
            for piece in splitter.split_text(block):
                for text in _fit(piece, metadata, embed_keys, tokens, budget):
                    content_hash = sha256_hex(text)
                    yield Chunk(
                        id=chunk_id(doc_id, index, content_hash),
                        index=index,
                        text=text,
                        metadata={**metadata, "chunk_index": index, "content_hash": content_hash},
                        embed_keys=embed_keys,
                    )
                    index += 1


def paragraph_blocks(text: str, max_chars: int = BLOCK_CHARS) -> Iterator[str]:
    """``text`` in blocks of about ``max_chars``, cut only at blank lines; blank blocks dropped.

    A paragraph longer than ``max_chars`` stays whole: the sentence splitter cuts it.
    """
    block: list[str] = []
    size = 0
    for paragraph in text.split("\n\n"):
        if size and size + len(paragraph) > max_chars:
            joined = "\n\n".join(block)
            if joined.strip():
                yield joined
            block, size = [], 0
        block.append(paragraph)
        size += len(paragraph) + 2
    joined = "\n\n".join(block)
    if joined.strip():
        yield joined


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
