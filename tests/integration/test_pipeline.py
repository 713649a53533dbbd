"""The core pipeline end to end: real Redis, Milvus, Celery workers and the bundled model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.producer.chunk import iter_chunks
from dropvec.producer.read import read_sections
from dropvec.producer.tokens import load_window
from tests.corpus import SEED
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

ESSAY, UBER = SEED / "paul_graham_essay.txt", SEED / "uber_2021.pdf"


def expected_chunks(stack: Stack, path: Path) -> int:
    """What the producer's chunking yields for ``path``, computed here independently of the queue."""
    s = stack.settings
    return len(
        list(
            iter_chunks(
                read_sections(path),
                doc_id=doc_id_for(str(path)),
                file_metadata={"file_path": str(path)},
                tokens=load_window(s.embed_model_path),
                chunk_size=s.chunk_size,
                chunk_overlap=s.chunk_overlap,
            )
        )
    )


def stored(stack: Stack, filter: str = "", fields: tuple[str, ...] = ("count(*)",)) -> list[dict]:
    client = MilvusClient(uri=stack.settings.milvus_uri)
    try:
        if fields == ("count(*)",):
            return client.query(
                stack.settings.collection,
                filter=filter,
                output_fields=list(fields),
                consistency_level="Strong",
            )
        rows: list[dict] = []
        it = client.query_iterator(
            stack.settings.collection,
            filter=filter,
            output_fields=list(fields),
            batch_size=1000,
            consistency_level="Strong",
        )
        while batch := it.next():
            rows += batch
        it.close()
        return rows
    finally:
        client.close()


def count(stack: Stack, filter: str = "") -> int:
    return int(stored(stack, filter)[0]["count(*)"])


@pytest.fixture(scope="module")
def corpus(stack: Stack) -> Path:
    """The essay and the Uber 10-K, ingested once through ``dropvec ingest --wait``."""
    folder = stack.root / "corpus"
    folder.mkdir()
    for src in (ESSAY, UBER):
        shutil.copy(src, folder / src.name)
    result = stack.dropvec("ingest", str(folder), "--wait")
    assert result.returncode == 0, result.stderr
    assert "queued 2 file(s)" in result.stdout
    return folder


def test_every_chunk_produced_is_stored_once(stack: Stack, corpus: Path) -> None:
    for name in (ESSAY.name, UBER.name):
        path = corpus / name
        assert count(stack, f'doc_id == "{doc_id_for(str(path))}"') == expected_chunks(stack, path), name


def test_no_stored_chunk_exceeds_the_model_window(stack: Stack, corpus: Path) -> None:
    window = load_window(stack.settings.embed_model_path)
    rows = stored(stack, f'doc_id in ["{doc_id_for(str(corpus / ESSAY.name))}"]', ("text",))
    rows += stored(stack, f'doc_id in ["{doc_id_for(str(corpus / UBER.name))}"]', ("text",))
    assert len(rows) > 1000
    assert max(window.count(r["text"]) for r in rows) <= window.budget


def test_entities_carry_file_chunk_hash_and_doc_id(stack: Stack, corpus: Path) -> None:
    doc = doc_id_for(str(corpus / ESSAY.name))
    [row] = stored(
        stack,
        f'doc_id == "{doc}" and chunk_index == 0',
        ("text", "file_path", "file_name", "chunk_index", "content_hash", "doc_id"),
    )
    assert row["file_path"] == str(corpus / ESSAY.name) and row["file_name"] == ESSAY.name
    assert row["text"].startswith("What I Worked On") and len(row["content_hash"]) == 64


def test_ingesting_the_same_files_again_changes_nothing(stack: Stack, corpus: Path) -> None:
    before = count(stack)
    # Given files already indexed, when they are ingested again unchanged, they are skipped
    again = stack.dropvec("ingest", str(corpus), "--wait")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stderr
    assert count(stack) == before
    # and when the essay is forced through the whole pipeline again, upserts leave the count alone
    forced = stack.dropvec("ingest", str(corpus / ESSAY.name), "--wait", "--force")
    assert forced.returncode == 0, forced.stderr
    assert count(stack) == before


def test_search_finds_uber_revenue_in_the_10k(stack: Stack, corpus: Path) -> None:
    result = stack.dropvec("search", "What was Uber's total revenue in 2021?", "-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert {"score", "file", "chunk", "text"} <= set(hits[0])
    assert hits[0]["file"].endswith("uber_2021.pdf")
    assert any("revenue" in h["text"].lower() for h in hits)


def test_search_answers_the_tutorial_question(stack: Stack, corpus: Path) -> None:
    result = stack.dropvec("search", "What did the author work on before college?", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    texts = [h["text"] for h in json.loads(result.stdout)]
    assert any("writing and programming" in t for t in texts), texts


def test_the_tutorials_query_code_works_unchanged(stack: Stack, corpus: Path) -> None:
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core import VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    LlamaSettings.embed_model = HuggingFaceEmbedding(model_name=stack.settings.embed_model_path)
    vector_store = MilvusVectorStore(uri=stack.settings.milvus_uri, collection_name=stack.settings.collection)
    index = VectorStoreIndex.from_vector_store(vector_store)
    nodes = index.as_retriever(similarity_top_k=3).retrieve("What did the author work on before college?")
    # it reads dropvec's chunks, text and file metadata (the answer's rank is dense search's own:
    # with 256-token chunks the essay's answer is not in its top 3; dropvec's hybrid search puts
    # it first, test_search_answers_the_tutorial_question)
    assert len(nodes) == 3
    # (other tests' files share the collection: any of them may rank here, all are dropvec's chunks)
    root = str(stack.root)
    assert all(n.node.get_content() and n.node.metadata["file_path"].startswith(root) for n in nodes)
    deeper = index.as_retriever(similarity_top_k=10).retrieve("What did the author work on before college?")
    assert any("writing and programming" in n.node.get_content() for n in deeper)


def test_bad_files_are_reported_one_line_each_and_the_rest_proceed(stack: Stack) -> None:
    # Given a folder with one good file and several bad ones
    folder = stack.root / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text(
        "# Otters\n\nSea otters hold hands while they sleep so they do not drift.\n"
    )
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf\x00\x01")
    (folder / "empty.txt").write_text("   \n\t\n")
    (folder / "image.bmp").write_bytes(b"BM" + bytes(64))
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 8)
    # When they are ingested and waited for
    result = stack.dropvec("ingest", str(folder), str(stack.root / "nope.txt"), "--wait")
    # Then the command fails, naming each bad file with its reason on one line
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for name, reason in [
        ("broken.pdf", "cannot read pdf"),
        ("empty.txt", "no text"),
        ("image.bmp", "unsupported file type .bmp"),
        ("binary.txt", "binary"),
        ("nope.txt", "no such file"),
    ]:
        assert any(name in line and reason in line for line in lines), (name, result.stderr)
    # and the good file is indexed and searchable
    state = StateStore.from_url(stack.settings.redis_url)
    assert state.get_file(doc_id_for(str(folder / "good.md")))["status"] == "indexed"
    assert state.get_file(doc_id_for(str(folder / "broken.pdf")))["status"] == "failed"
    assert count(stack, f'doc_id == "{doc_id_for(str(folder / "good.md"))}"') == 1
    hits = json.loads(stack.dropvec("search", "Do sea otters hold hands?", "-k", "1", "--json").stdout)
    assert hits[0]["file"].endswith("good.md")


def test_status_reports_services_collection_queue_and_workers(stack: Stack, corpus: Path) -> None:
    result = stack.dropvec("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["redis_url"] == stack.settings.redis_url
    assert status["milvus_uri"] == stack.settings.milvus_uri
    assert status["collection"] == stack.settings.collection
    assert status["entities"] == count(stack) > 0
    assert status["queue_depth"] == 0
    assert status["workers"] == 2
