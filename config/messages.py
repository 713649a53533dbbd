"""The task message contract: the only thing that crosses the queue.

A task carries chunk text and metadata, never a path to read, so a worker needs no access to the
producer's disk. Messages travel as JSON (Celery's json serializer); pickle is never accepted.

:func:`to_node` is the single place where a chunk becomes a llama-index node. The producer calls it
to measure what will be embedded; the worker calls it to build what it embeds and stores. Both
therefore agree, token for token, on the text the model sees.
"""

from __future__ import annotations

from typing import Literal

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from pydantic import BaseModel, ConfigDict, Field

#: Celery task name of the embed-and-write task.
EMBED_TASK = "dropvec.embed_chunks"


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Deterministic chunk id: file identity, position and content")
    index: int = Field(ge=0, description="Position of the chunk in its file")
    text: str
    metadata: dict[str, str | int | float] = Field(default_factory=dict)
    embed_keys: tuple[str, ...] = Field((), description="Metadata keys embedded with the text")


class EmbedTask(BaseModel):
    """One unit of work: up to ``chunks_per_task`` chunks of one file."""

    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    run_id: str = Field(description="The ingest run this task belongs to (progress, failures)")
    doc_id: str = Field(description="Identity of the source file")
    file_path: str
    task_index: int = Field(ge=0, description="Position of this task among its file's tasks")
    chunks: list[Chunk] = Field(min_length=1)


def to_node(chunk: Chunk, doc_id: str) -> TextNode:
    """Build the node that is embedded and stored for ``chunk``."""
    excluded = [k for k in chunk.metadata if k not in chunk.embed_keys]
    node = TextNode(
        id_=chunk.id,
        text=chunk.text,
        metadata=dict(chunk.metadata),
        excluded_embed_metadata_keys=excluded,
        excluded_llm_metadata_keys=[k for k in chunk.metadata if k not in ("file_name", "page_label")],
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
    return node
