"""The ONNX and OpenVINO backends apply the model's own sentence-transformers pooling, or refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropvec.config.errors import ConfigError
from dropvec.workers.encoder import pooling_of


def model_folder(tmp_path: Path, pooling: dict, extra: list[dict] = ()) -> Path:  # type: ignore[assignment]
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        *extra,
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    return tmp_path


def test_mean_pooling_with_normalisation_as_all_minilm_has_it(tmp_path: Path) -> None:
    normalize = {
        "idx": 2,
        "name": "2",
        "path": "2_Normalize",
        "type": "sentence_transformers.models.Normalize",
    }
    folder = model_folder(tmp_path, {"pooling_mode": "mean"}, [normalize])
    assert pooling_of(folder) == ("mean", True)


def test_the_older_flag_style_names_cls_pooling(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    assert pooling_of(folder) == ("cls", False)


def test_a_module_it_cannot_apply_is_refused(tmp_path: Path) -> None:
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    with pytest.raises(ConfigError, match="cannot apply the module"):
        pooling_of(model_folder(tmp_path, {"pooling_mode": "mean"}, [dense]))
    with pytest.raises(ConfigError, match="no sentence-transformers modules.json"):
        pooling_of(tmp_path / "missing")


def test_the_window_is_sentence_transformers_else_the_lower_of_tokenizer_and_positions(
    tmp_path: Path,
) -> None:
    from dropvec.workers.encoder import max_seq_length

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 10**30}))
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 514}))
    assert max_seq_length(tmp_path) == 514  # (a tokenizer that names no limit of its own)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    assert max_seq_length(tmp_path) == 256
    assert max_seq_length(tmp_path / "missing") == 512


def test_exports_of_the_same_model_unused_for_a_month_are_pruned(tmp_path: Path) -> None:
    import os
    import time

    from dropvec.workers.embed import STALE_EXPORT_SECONDS, prune_exports

    def export(name: str, idle_days: float) -> Path:
        folder = tmp_path / name
        (folder / "onnx").mkdir(parents=True)
        (folder / "onnx" / "model.onnx").write_bytes(b"graph")
        then = time.time() - idle_days * 86400
        os.utime(folder, (then, then))
        return folder

    kept = export("all-MiniLM-L6-v2-aaaa", 0)
    stale = export("all-MiniLM-L6-v2-bbbb", 31)
    (tmp_path / "all-MiniLM-L6-v2-bbbb.lock").touch()
    recent = export("all-MiniLM-L6-v2-cccc", 29)  # (another install may still load it)
    other_model = export("all-MiniLM-L6-v2-extra-dddd", 90)  # not this model's
    assert STALE_EXPORT_SECONDS == 30 * 86400
    assert prune_exports(kept) == [stale]
    assert not stale.exists() and not (tmp_path / "all-MiniLM-L6-v2-bbbb.lock").exists()
    assert kept.exists() and recent.exists() and other_model.exists()
