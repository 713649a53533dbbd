"""Both embedded Milvus servers `dropvec up` can start work with the same store code:
Milvus Lite served over gRPC (the default) and the embedded Milvus standalone 2.3."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from dropvec.stack import start_milvus
from dropvec.workers.store import ChunkWriter, count_entities, open_store
from tests.integration.conftest import local_settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["lite", "standalone"])
def test_embedded_milvus_stores_chunks_once_and_keeps_them_across_a_restart(
    tmp_path: Path, kind: str
) -> None:
    settings = local_settings(tmp_path, embedded_milvus=kind, collection="embedded_test")
    nodes = [
        TextNode(
            id_=f"n{i}",
            text=f"chunk {i}",
            embedding=[1.0, float(i), 0.5],
            metadata={"embed_hash": f"h{i}", "generation": 1 + i % 2},
        )
        for i in range(10)
    ]
    for node in nodes:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc")

    async def write() -> int:
        store = open_store(settings, 3, use_async=True)
        return await ChunkWriter(store, settings).write(nodes)

    async def reuse_then_remove_older() -> tuple[dict[str, list[float]], int]:
        writer = ChunkWriter(open_store(settings, 3, use_async=True), settings)
        return await writer.stored_vectors(["h3", "nope"]), await writer.remove("doc", below_generation=2)

    service = start_milvus(settings, settings.data_dir)
    assert service is not None
    try:
        assert asyncio.run(write()) == 10
        assert asyncio.run(write()) == 0  # written again: the stored ids are left out, stored once
        assert count_entities(settings) == 10
        # vectors are found by embed hash, and a file's older generation is removed by its doc id
        found, removed = asyncio.run(reuse_then_remove_older())
        assert found == {"h3": [1.0, 3.0, 0.5]}
        assert removed == 5
        assert count_entities(settings) == 5
    finally:
        service.stop()
    assert service.proc.poll() is not None
    if kind == "standalone":
        pytest.skip("stored and removed as expected; its restart with data is not checked: not reliable, "
                    "see docs/operations.md, 'The embedded Milvus'")  # fmt: skip
    service = start_milvus(settings, settings.data_dir)
    assert service is not None
    try:
        assert count_entities(settings) == 5
    finally:
        service.stop()
