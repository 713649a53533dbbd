"""The task contract: JSON round trip, and the node the worker builds from it."""

from __future__ import annotations

import json

import pytest
from llama_index.core.schema import MetadataMode
from pydantic import ValidationError

from dropvec.config.messages import (
    MAX_CHUNK_CHARS,
    MAX_CHUNKS_PER_TASK,
    MAX_METADATA_ITEMS,
    MAX_PATH_CHARS,
    Chunk,
    EmbedTask,
    to_node,
)


def _task() -> EmbedTask:
    chunk = Chunk(
        id="c1",
        index=0,
        text="hello world",
        embed_keys=("file_name",),
        metadata={"file_name": "a.txt", "file_path": "/in/a.txt", "chunk_index": 0},
    )
    return EmbedTask(
        run_id="r", doc_id="d", generation=1, file_path="/in/a.txt", task_index=0, chunks=[chunk]
    )


def test_a_task_survives_a_json_round_trip() -> None:
    task = _task()
    assert EmbedTask.model_validate(json.loads(json.dumps(task.model_dump(mode="json")))) == task


def test_unknown_versions_and_empty_tasks_are_refused() -> None:
    data = _task().model_dump(mode="json")
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "version": 1})
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "chunks": []})


def test_the_node_embeds_only_the_chosen_metadata_and_points_at_its_file() -> None:
    node = to_node(_task().chunks[0], "d")
    assert node.node_id == "c1"
    assert node.ref_doc_id == "d"
    assert node.get_content(metadata_mode=MetadataMode.EMBED) == "file_name: a.txt\n\nhello world"


def test_messages_past_the_caps_are_refused() -> None:
    data = _task().model_dump(mode="json")
    chunk = data["chunks"][0]
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "chunks": [chunk] * (MAX_CHUNKS_PER_TASK + 1)})
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "chunks": [{**chunk, "text": "x" * (MAX_CHUNK_CHARS + 1)}]})
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "file_path": "/" + "d" * MAX_PATH_CHARS})
    many = {f"k{i}": i for i in range(MAX_METADATA_ITEMS + 1)}
    with pytest.raises(ValidationError):
        EmbedTask.model_validate({**data, "chunks": [{**chunk, "metadata": many}]})


def test_an_llm_is_told_where_each_source_is_and_nothing_internal() -> None:
    from llama_index.core.schema import MetadataMode

    from dropvec.config.messages import Chunk, to_node

    meta = {"file_name": "deck.pptx", "slide": 2, "title": "Otters", "chunk_index": 4, "content_hash": "ab"}
    shown = to_node(Chunk(id="c", index=4, text="Sea otters.", metadata=meta), "d").get_content(
        MetadataMode.LLM
    )
    assert "slide: 2" in shown and "title: Otters" in shown and "file_name: deck.pptx" in shown
    assert "chunk_index" not in shown and "content_hash" not in shown
