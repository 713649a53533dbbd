"""The embedding backends on the real bundled model: the ONNX export gives torch's vectors, and
int8 and OpenVINO pass the quality gate (bench.quality) on the essay's labelled questions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.core import SEED
from bench.quality import run
from dropvec.config.settings import Settings, cpu_has_amx, gpu_driver_present

pytestmark = pytest.mark.integration


def test_onnx_matches_torch_and_int8_and_openvino_keep_retrieval_quality() -> None:
    settings = Settings(_env_file=None, log_level="WARNING")  # type: ignore[call-arg]
    backends = ("torch", "onnx", "onnx-int8", "openvino")
    torch, onnx, int8, ov = run(settings, [SEED / "paul_graham_essay.txt"], backends)
    assert torch["questions"] >= 20
    assert onnx["cosine_to_reference_min"] > 0.9999  # the same model, another runtime
    assert onnx["recall_at_5"] == torch["recall_at_5"]
    assert int8["cosine_to_reference_mean"] > 0.98
    assert int8["cosine_to_reference_min"] > 0.95
    assert int8["gate_holds"], int8  # recall@5 within 1 point of fp32's
    assert ov["cosine_to_reference_mean"] > 0.99  # (bf16 where the CPU has it, else fp32)
    assert ov["gate_holds"], ov


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino"])
def test_a_texts_vector_does_not_depend_on_the_texts_beside_it(backend: str) -> None:
    # Nothing is padded: texts of other lengths run apart (an int8 graph quantises each run's
    # activations by their own range, so padding or neighbours would change a text's vector)
    from dropvec.workers.embed import load_embedder

    settings = Settings(_env_file=None, log_level="WARNING", embed_backend=backend)  # type: ignore[call-arg]
    model = load_embedder(settings)
    texts = ["Otters.", "Sea otters hold hands while they sleep.", "word " * 400, "Otters."]
    together = np.array(model.get_text_embedding_batch(texts))
    alone = np.array([model.get_text_embedding(t) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert together.shape == (4, 384)


def test_onnx_runtime_runs_texts_of_one_length_only_as_many_as_its_token_budget_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # long texts of one length run a few at a time (a larger run spills the caches), short ones
    # in one run (encoder.TOKENS_PER_RUN_PER_THREAD)
    from dropvec.workers.embed import load_embedder
    from dropvec.workers.encoder import TOKENS_PER_RUN_PER_THREAD, OnnxRuntimeEmbedding

    settings = Settings(_env_file=None, log_level="WARNING", embed_backend="onnx-int8")  # type: ignore[call-arg]
    model = load_embedder(settings)
    assert model.tokens_per_run == TOKENS_PER_RUN_PER_THREAD * settings.threads_per_process()
    shapes: list[tuple[int, ...]] = []
    run = OnnxRuntimeEmbedding._run

    def recorded(self: OnnxRuntimeEmbedding, inputs: dict[str, np.ndarray]) -> np.ndarray:
        shapes.append(inputs["input_ids"].shape)
        return run(self, inputs)

    monkeypatch.setattr(OnnxRuntimeEmbedding, "_run", recorded)
    vectors = model.get_text_embedding_batch(["word " * 400] * 8 + ["Sea otters hold hands."] * 8)
    assert len(vectors) == 16
    window = model.max_length  # (the long texts, truncated to it)
    per_run = max(1, model.tokens_per_run // window)
    long_runs = sorted(n for n, tokens in shapes if tokens == window)
    assert long_runs == sorted(min(per_run, 8 - i) for i in range(0, 8, per_run))
    short = [n for n, tokens in shapes if tokens != window]
    assert short == [8], shapes  # (a few tokens each: all eight in one run)


def test_the_int8_graph_runs_without_the_skip_layer_norm_fusion_and_the_padding_mask(tmp_path: Path) -> None:
    """ONNX Runtime would fold each residual Add and LayerNorm into SkipLayerNormalization, whose
    CPU kernel was the int8 graph's slowest part (encoder.UNFUSED); the worker's session leaves
    the two apart, and the graph is otherwise optimised as before (the MatMuls still fused with
    their dynamic quantisation). The export took the padding mask's Add out of the attention
    scores (embed.drop_padding_mask): no Softmax reads an Add."""
    import onnx
    import onnxruntime

    from dropvec.workers.embed import QUANTIZED_FILE, export_onnx
    from dropvec.workers.encoder import ort_session

    graph = export_onnx(Settings(_env_file=None, log_level="WARNING")) / "onnx" / QUANTIZED_FILE  # type: ignore[call-arg]
    ort_session(graph, 1, optimized_to=tmp_path / "worker.onnx")
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "default.onnx")
    onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    default = {node.op_type for node in onnx.load(str(tmp_path / "default.onnx")).graph.node}
    assert "SkipLayerNormalization" in default  # what ONNX Runtime would run
    nodes = onnx.load(str(tmp_path / "worker.onnx")).graph.node
    worker = {node.op_type for node in nodes}
    assert "SkipLayerNormalization" not in worker
    assert {"LayerNormalization", "DynamicQuantizeMatMul"} <= worker
    made_by = {out: node.op_type for node in nodes for out in node.output}
    softmax_inputs = [made_by.get(node.input[0]) for node in nodes if node.op_type == "Softmax"]
    assert len(softmax_inputs) == 6 and "Add" not in softmax_inputs, softmax_inputs


def test_default_backend_on_a_cpu() -> None:
    bundled = Settings(_env_file=None, device="cpu")  # type: ignore[call-arg]
    assert bundled.resolved_backend() == ("openvino" if cpu_has_amx() else "onnx-int8")
    other = Settings(_env_file=None, device="cpu", embed_model="/some/model")  # type: ignore[call-arg]
    assert other.resolved_backend() == "onnx"  # int8 is gated on the bundled model only
    assert Settings(_env_file=None, device="cuda").resolved_backend() == "torch"  # type: ignore[call-arg]


def test_a_model_that_cannot_be_exported_falls_back_to_torch_only_under_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dropvec.workers.embed as embed
    from dropvec.config.errors import ConfigError

    def cannot_export(source: str, recipe: str, folder: Path) -> None:
        raise ConfigError(f"cannot export embedding model {source!r} to ONNX: unsupported")

    monkeypatch.setattr(embed, "build_elsewhere", cannot_export)
    auto = Settings(_env_file=None, device="cpu", cache_dir=tmp_path)  # type: ignore[call-arg]
    model = embed.load_embedder(auto)
    assert type(model._model[0].auto_model).__module__.startswith("transformers")  # torch, not ONNX
    assert len(model.get_text_embedding("still works")) == 384
    with pytest.raises(ConfigError, match="cannot export"):
        embed.load_embedder(auto.model_copy(update={"embed_backend": "onnx-int8"}))


def test_an_export_that_fails_says_why(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # no model_type: transformers cannot build it
    settings = Settings(_env_file=None, device="cpu", embed_model=str(model), embed_backend="onnx",  # type: ignore[call-arg]
                        cache_dir=tmp_path / "cache")  # fmt: skip
    from dropvec.config.errors import ConfigError
    from dropvec.workers.embed import load_embedder

    with pytest.raises(ConfigError, match=r"cannot export embedding model .*model_type"):
        load_embedder(settings)


def test_the_onnx_backends_never_import_torch(tmp_path: Path) -> None:
    """A worker on ONNX Runtime or OpenVINO holds the runtime and the graph, not torch's 450 MB:
    the first export runs in a child process, and the device check looks for a GPU driver first."""
    device = "cpu" if gpu_driver_present() else "auto"  # (with a GPU, auto asks torch)
    probe = (
        "import sys\n"
        "from dropvec.config.settings import Settings\n"
        "from dropvec.workers.embed import load_embedder, embedding_dim\n"
        "for backend in ('onnx-int8', 'onnx', 'openvino'):\n"
        f"    s = Settings(_env_file=None, embed_backend=backend, device={device!r},\n"
        f"                 cache_dir={str(tmp_path)!r})\n"
        "    model = load_embedder(s)\n"
        "    assert embedding_dim(model) == 384 == len(model.get_query_embedding('probe'))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "heavy: []" in done.stdout, done.stdout
