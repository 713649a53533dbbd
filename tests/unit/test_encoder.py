"""The ONNX and OpenVINO backends apply the model's own sentence-transformers pooling, or refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dropvec.config.errors import ConfigError
from dropvec.workers.encoder import pooling_of, run_size


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


def _attention_graph(path: Path, mask_holds_more: bool) -> None:
    """A tiny graph shaped as a BERT export's attention: Softmax(scores + bias), the bias computed
    from ``attention_mask`` as (1 - mask) * -10000; with ``mask_holds_more``, the bias also holds
    a term of the input (as a causal mask would: not zero where every token is attended)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([-10000.0], dtype=np.float32), "big"),
        numpy_helper.from_array(np.array([0.5], dtype=np.float32), "half"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids_f", "axis1"], ["scores"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask_f"], ["inverted"]),
        helper.make_node("Mul", ["inverted", "big"], ["bias_flat"]),
        helper.make_node("Unsqueeze", ["bias_flat", "axis1"], ["padding_bias"]),
    ]
    bias = "padding_bias"
    if mask_holds_more:
        nodes += [
            helper.make_node("Mul", ["ids_f", "half"], ["extra_flat"]),
            helper.make_node("Unsqueeze", ["extra_flat", "axis1"], ["extra"]),
            helper.make_node("Add", ["padding_bias", "extra"], ["causal_bias"]),
        ]
        bias = "causal_bias"
    nodes += [
        helper.make_node("Add", ["scores", bias], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["out"], axis=-1),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, [1, "L"]) for n in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "L"])
    graph = helper.make_graph(nodes, "attention", inputs, [output], constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _probes() -> list[dict[str, Any]]:
    import numpy as np

    ids, mask = np.array([[1, 2, 3]], dtype=np.int64), np.ones((1, 3), dtype=np.int64)
    return [{"input_ids": ids, "attention_mask": mask}]


def test_the_padding_mask_is_taken_out_of_a_graph_that_is_never_padded(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime

    from dropvec.workers.embed import drop_padding_mask

    graph = tmp_path / "model.onnx"
    _attention_graph(graph, mask_holds_more=False)
    probes = _probes()
    before = onnxruntime.InferenceSession(str(graph)).run(None, probes[0])[0]
    assert drop_padding_mask(graph, probes)
    ops = [node.op_type for node in onnx.load(str(graph)).graph.node]
    assert "Add" not in ops and "Softmax" in ops
    np.testing.assert_allclose(onnxruntime.InferenceSession(str(graph)).run(None, probes[0])[0], before)


def test_a_mask_that_holds_more_than_padding_is_left_in_place(tmp_path: Path) -> None:
    from dropvec.workers.embed import drop_padding_mask

    graph = tmp_path / "model.onnx"
    _attention_graph(graph, mask_holds_more=True)
    original = graph.read_bytes()
    assert not drop_padding_mask(graph, _probes())
    assert graph.read_bytes() == original


def test_a_run_takes_as_many_texts_of_one_length_as_its_tokens_hold_within_the_batch() -> None:
    assert run_size(256, 512, 32) == 2
    assert run_size(100, 512, 32) == 5
    assert run_size(16, 512, 32) == 32  # (the batch size caps it)
    assert run_size(600, 512, 32) == 1  # (a text longer than the budget still runs)
    assert run_size(256, 1024, 32) == 4  # (two threads)
    assert run_size(256, None, 32) == 32  # (no budget: OpenVINO keeps whole batches)
