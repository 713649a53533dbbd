"""The other embedded Milvus, Milvus Lite served over gRPC, works with the same store code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.schema import TextNode

from dropvec.stack import start_milvus
from tests.integration.conftest import local_settings
from workers.store import ChunkWriter, count_entities, open_store

pytestmark = pytest.mark.integration


def test_milvus_lite_stores_and_finds_chunks(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, embedded_milvus="lite", collection="lite_test")
    service = start_milvus(settings, settings.data_dir)
    assert service is not None
    try:
        nodes = [TextNode(id_=f"n{i}", text=f"chunk {i}", embedding=[1.0, float(i), 0.5]) for i in range(10)]

        async def write() -> int:
            store = open_store(settings, 3, use_async=True)
            return await ChunkWriter(store, settings).write(nodes)

        assert asyncio.run(write()) == 10
        assert asyncio.run(write()) == 10  # upserts: written twice, stored once
        assert count_entities(settings) == 10
    finally:
        service.stop()
    assert service.proc.poll() is not None
