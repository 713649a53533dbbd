"""The task message contract: the only thing that crosses the queue.

A task carries chunk text and metadata, never a path to read, so a worker needs no access to the
producer's disk. Messages travel as JSON (Celery's json serializer); pickle is never accepted.

:func:`to_node` is the single place where a chunk becomes a llama-index node. The producer calls it
to measure what will be embedded; the worker calls it to build what it embeds and stores. Both
therefore agree, token for token, on the text the model sees.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

#: Celery task name of the embed-and-write task.
EMBED_TASK = "dropvec.embed_chunks"
#: Celery task name of the task that embeds and writes the chunks of several small files at once.
EMBED_FILES_TASK = "dropvec.embed_files"
#: Celery task name of the task that removes a file's chunks from the store.
REMOVE_TASK = "dropvec.remove_chunks"


#: Caps on a message: a worker refuses (and drops) one past them before doing anything with it.
MAX_CHUNKS_PER_TASK = 1024
#: So that a chunk's UTF-8 always fits Milvus's VARCHAR limit (65,535 bytes) that its text is stored in.
MAX_CHUNK_CHARS = 16_383
MAX_TASK_TEXT_CHARS = 8 * 2**20
MAX_PATH_CHARS = 4096
MAX_METADATA_ITEMS = 32
#: Files in one task of several (``FilesTask``).
MAX_FILES_PER_TASK = 512

Short = Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS)]


def embed_hash(model_key: str, embedded_text: str) -> str:
    """The key a vector is stored and reused by: the model and the exact text it was given."""
    return hashlib.sha256(f"{model_key}\0{embedded_text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: Short = Field(description="Deterministic chunk id: file identity, position and content")
    index: int = Field(ge=0, description="Position of the chunk in its file")
    text: str = Field(max_length=MAX_CHUNK_CHARS)
    metadata: dict[Short, Short | int | float] = Field(default_factory=dict, max_length=MAX_METADATA_ITEMS)
    embed_keys: tuple[Short, ...] = Field((), description="Metadata keys embedded with the text")


class EmbedTask(BaseModel):
    """One unit of work: up to ``chunks_per_task`` chunks of one version of one file."""

    model_config = ConfigDict(frozen=True)

    version: Literal[2] = 2
    run_id: Short = Field(description="The ingest run this task belongs to (progress, failures)")
    doc_id: Short = Field(description="Identity of the source file")
    generation: int = Field(ge=1, description="The file version; a task of a replaced version is dropped")
    file_path: Short
    task_index: int = Field(ge=0, description="Position of this task among its file's tasks")
    chunks: list[Chunk] = Field(min_length=1, max_length=MAX_CHUNKS_PER_TASK)

    @model_validator(mode="after")
    def _text_capped(self) -> EmbedTask:
        if sum(len(c.text) for c in self.chunks) > MAX_TASK_TEXT_CHARS:
            raise ValueError(f"the chunks hold more than {MAX_TASK_TEXT_CHARS} characters of text")
        return self


class FilesTask(BaseModel):
    """The one task of each of several small files, sent as one so that the model's batches are
    full whatever the files' sizes. Each part is counted, and fails, as its file's own task."""

    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    parts: list[EmbedTask] = Field(min_length=1, max_length=MAX_FILES_PER_TASK)

    @model_validator(mode="after")
    def _capped(self) -> FilesTask:
        if sum(len(p.chunks) for p in self.parts) > MAX_CHUNKS_PER_TASK:
            raise ValueError(f"the parts hold more than {MAX_CHUNKS_PER_TASK} chunks")
        if sum(len(c.text) for p in self.parts for c in p.chunks) > MAX_TASK_TEXT_CHARS:
            raise ValueError(f"the parts hold more than {MAX_TASK_TEXT_CHARS} characters of text")
        return self


class RemoveTask(BaseModel):
    """Remove the chunks of file ``doc_id`` older than ``below_generation`` (a deleted file: all)."""

    model_config = ConfigDict(frozen=True)

    version: Literal[2] = 2
    doc_id: Short
    file_path: Short = Field(description="For logs and error reports only")
    below_generation: int = Field(ge=1)


#: Chunk metadata that tells where in its file a chunk is, as its reader says (besides the page
#: and the section's heading path).
LOCATION_KEYS = ("slide", "sheet", "chapter", "subject", "attachment", "cell", "symbol")
#: Metadata an LLM is given with each source (``ask``): which file, and where in it.
LLM_METADATA_KEYS = ("file_name", "title", "page_label", "header_path", *LOCATION_KEYS)


def to_node(chunk: Chunk, doc_id: str, *, generation: int = 0, embed_hash: str = "") -> TextNode:
    """Build the node that is embedded and stored for ``chunk``.

    ``generation`` and ``embed_hash`` are stored with it (never embedded): the file version it
    belongs to and the key its vector can be reused by.
    """
    metadata = dict(chunk.metadata)
    if generation:
        metadata["generation"] = generation
    if embed_hash:
        metadata["embed_hash"] = embed_hash
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # (0.8 s to import)

    node = TextNode(
        id_=chunk.id,
        text=chunk.text,
        metadata=metadata,
        excluded_embed_metadata_keys=[k for k in metadata if k not in chunk.embed_keys],
        excluded_llm_metadata_keys=[k for k in metadata if k not in LLM_METADATA_KEYS],
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
    return node


def embedded_text(chunk: Chunk, doc_id: str = "") -> str:
    """Exactly what the model is given for ``chunk``: what the producer measures and the worker
    embeds (and what a stored vector is keyed by, with the model)."""
    from llama_index.core.schema import MetadataMode

    return to_node(chunk, doc_id).get_content(metadata_mode=MetadataMode.EMBED)
