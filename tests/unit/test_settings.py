"""Settings: environment names scripts rely on, the bundled model, secrets kept out of output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropvec.config.settings import BUNDLED_MODEL, Settings, redact_url


def test_documented_environment_names_set_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DROPVEC_REDIS_URL": "redis://h:1/2",
        "DROPVEC_MILVUS_URI": "http://m:3",
        "DROPVEC_MILVUS_TOKEN": "root:Milvus",
        "DROPVEC_COLLECTION": "c",
        "DROPVEC_EMBED_MODEL": "sentence-transformers/all-MiniLM-L6-v2",
        "DROPVEC_INBOX": "/in",
        "DROPVEC_DATA_DIR": "/data",
        "DROPVEC_CHUNKS_PER_TASK": "7",
        "DROPVEC_EMBED_METADATA_KEYS": '["file_name"]',
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.redis_url, s.milvus_uri, s.collection) == ("redis://h:1/2", "http://m:3", "c")
    assert s.milvus_token.get_secret_value() == "root:Milvus"
    assert (s.inbox, s.data_dir, s.chunks_per_task) == (Path("/in"), Path("/data"), 7)
    assert s.embed_model_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert s.embed_metadata_keys == ("file_name",)
    assert Settings(**{}).to_env()["DROPVEC_CHUNKS_PER_TASK"] == "7"


def test_default_model_is_the_bundled_minilm_on_disk() -> None:
    s = Settings()
    assert s.embed_model == BUNDLED_MODEL
    assert (Path(s.embed_model_path) / "model.safetensors").exists()
    assert s.model_is_local


def test_a_local_model_folder_is_used_as_a_path(tmp_path: Path) -> None:
    assert Settings(embed_model=str(tmp_path)).embed_model_path == str(tmp_path.resolve())


def test_a_copy_with_other_models_resolves_their_paths(tmp_path: Path) -> None:
    first = Settings()
    assert first.embed_model_path != str(tmp_path) and first.model_is_local
    copy = first.model_copy(update={"embed_model": str(tmp_path), "rerank_model": "org/a-hub-model"})
    assert copy.embed_model_path == str(tmp_path.resolve())
    assert copy.rerank_model_path == "org/a-hub-model" and not copy.model_is_local


def test_passwords_are_masked_in_printed_urls() -> None:
    assert redact_url("redis://user:hunter2@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_model_batches_are_sized_for_the_device_unless_set() -> None:
    from dropvec.workers.embed import torch_gpu_options

    assert Settings(device="cpu").batch_size() == 32
    assert Settings(device="cuda").batch_size() == 256
    assert Settings(device="cpu").batch_size("cuda:1") == 256
    assert Settings(embed_batch_size=8).batch_size("cuda") == 8
    # on a GPU, torch runs the model in fp16
    assert str(torch_gpu_options()["torch_dtype"]) == "torch.float16"


@pytest.mark.parametrize(
    ("device", "driver", "expected"),
    [("auto", False, "false"), ("cpu", True, "false"), ("auto", True, "true"), ("cuda", True, "true")],
)
def test_the_tokenizer_gets_every_core_only_beside_a_gpu(
    monkeypatch: pytest.MonkeyPatch, device: str, driver: bool, expected: str
) -> None:
    """On a CPU the model's threads own the cores; beside a GPU the tokenizer is the CPU's share of
    every batch, and gets every core."""
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr("dropvec.config.settings.gpu_driver_present", lambda: driver)
    Settings(device=device).prepare_environment()
    assert os.environ["TOKENIZERS_PARALLELISM"] == expected
