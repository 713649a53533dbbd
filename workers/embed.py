"""The embedding model, loaded once per process, on the backend the settings resolve to.

``torch``      sentence-transformers on torch: CUDA (fp16, batches of 256) when a GPU is present,
               else CPU fp32.
``onnx``       the same model exported to ONNX (vectors equal to torch's), run by ONNX Runtime.
``onnx-int8``  that export, its transformer blocks fused by ONNX Runtime's optimizer (attention,
               GELU, LayerNorm: one operator each), then quantised to int8: dynamic, per-channel
               weights, the MatMuls and attention projections only (the embeddings, LayerNorm,
               softmax and GELU stay fp32), with the instruction set the CPU has (AVX-512 VNNI, AVX2
               or ARM64). Fusing first is what beats sentence-transformers' own int8 recipe, which
               quantises the unfused graph (1.15x its encode on an AVX2 CPU, bench.perf). A model
               whose fused graph does not give the unfused graph's vectors is quantised unfused.
               ``bench.quality`` measures what int8 costs.
``openvino``   the fp32 export on OpenVINO's CPU runtime, in bf16 where the CPU has it
               (``ov_backend``): on such CPUs about twice the speed of ``onnx-int8``.

ONNX exports are built from the model's own local weights, offline, once per machine, into
``cache_dir``: the first worker to need one builds it under a file lock while the others wait.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.embeddings.huggingface import HuggingFaceEmbedding

from dropvec.config.errors import ConfigError
from dropvec.config.settings import Settings

log = logging.getLogger(__name__)

#: Bumped when the export or quantisation recipe changes: older exports are then rebuilt.
RECIPE_VERSION = 2
QUANTIZED_FILE = "model_qint8.onnx"


def load_embedder(settings: Settings) -> BaseEmbedding:
    """Load the configured model, with the thread count of one worker process."""
    import torch

    threads = settings.threads_per_process()
    torch.set_num_threads(threads)
    settings.prepare_environment()
    device = settings.resolved_device()
    backend = settings.resolved_backend()
    from llama_index.embeddings.huggingface.utils import (
        get_query_instruct_for_model_name,
        get_text_instruct_for_model_name,
    )

    options: dict[str, Any] = {
        # by the configured name: an exported copy's path would lose the model's instructions
        "query_instruction": get_query_instruct_for_model_name(settings.embed_model_path),
        "text_instruction": get_text_instruct_for_model_name(settings.embed_model_path),
    }
    model_name = settings.embed_model_path
    if backend != "torch":
        if device != "cpu":
            raise ConfigError(
                f"the {backend} backend runs on the CPU: set DROPVEC_EMBED_BACKEND=torch for {device}"
            )
        try:
            if backend == "openvino":
                from dropvec.workers.ov_backend import OpenVINOEmbedding

                ov = OpenVINOEmbedding(
                    export_onnx(settings), "onnx/model.onnx", threads,
                    embed_batch_size=settings.batch_size(device), **options,
                )  # fmt: skip
                log.info("loaded %s (openvino) on cpu with %d threads", settings.embed_model, threads)
                return ov
            model_name, options["model_kwargs"] = onnx_model(settings, backend, threads)
            options["backend"] = "onnx"
        except ConfigError as exc:
            if settings.embed_backend != "auto":
                raise
            log.warning("%s; using the torch backend", exc)  # a model that cannot be exported
            backend = "torch"
    if backend == "torch" and device.startswith("cuda"):
        options["model_kwargs"] = torch_gpu_options()
    model = HuggingFaceEmbedding(
        model_name=model_name,
        device=device,
        embed_batch_size=settings.batch_size(device),
        normalize=True,
        **options,
    )
    log.info("loaded %s (%s) on %s with %d threads", settings.embed_model, backend, device, threads)
    return model


def torch_gpu_options() -> dict[str, Any]:
    """On a GPU the model runs in fp16: twice the speed of fp32 and half its memory, with cosines
    to fp32 above 0.999 for MiniLM-class encoders (not measured here: no GPU was drawn)."""
    import torch

    return {"torch_dtype": torch.float16}


def embedding_dim(model: BaseEmbedding) -> int:
    """The model's output dimension, asked of the model itself."""
    if not isinstance(model, HuggingFaceEmbedding):
        return len(model.get_text_embedding("dimension probe"))
    st = model._model  # sentence-transformers renamed the method (5.2); either answers the same
    dim = (
        st.get_embedding_dimension()
        if hasattr(st, "get_embedding_dimension")
        else st.get_sentence_embedding_dimension()
    )
    return int(dim) if dim else len(model.get_text_embedding("dimension probe"))


def onnx_model(settings: Settings, backend: str, threads: int) -> tuple[str, dict[str, Any]]:
    """The exported model's folder and the ``model_kwargs`` that load ``backend`` from it."""
    import onnxruntime

    folder = export_onnx(settings)
    session = onnxruntime.SessionOptions()
    session.intra_op_num_threads = threads
    session.inter_op_num_threads = 1
    # Idle threads sleep rather than spin: on a small machine the producer and Milvus need the cores
    # between the model's operators (measured: +7% end to end, and no loss in the model's own speed).
    session.add_session_config_entry("session.intra_op.allow_spinning", "0")
    file_name = QUANTIZED_FILE if backend == "onnx-int8" else "model.onnx"
    kwargs = {
        "file_name": f"onnx/{file_name}",
        "provider": "CPUExecutionProvider",
        "session_options": session,
    }
    return str(folder), kwargs


def quantization_recipe() -> str:
    """The optimum quantisation preset for this CPU: its int8 instructions decide how weights are
    stored (without VNNI, full-range int8 weights saturate, so AVX2 gets a reduced range)."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "avx512_vnni" if "avx512_vnni" in flags or "amx_int8" in flags else "avx2"


def export_onnx(settings: Settings) -> Path:
    """The model's ONNX export (fp32 ``onnx/model.onnx`` and int8 ``onnx/model_qint8.onnx``) in
    the cache, built now if missing. Keyed by the model, its weights' size and time, the recipe."""
    source = settings.embed_model_path
    recipe = quantization_recipe()
    stamp = [source, recipe, str(RECIPE_VERSION)]
    if Path(source).is_dir():
        stamp += [
            f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(Path(source).iterdir())
        ]
    key = hashlib.sha256("\0".join(stamp).encode()).hexdigest()[:16]
    folder = settings.cache_dir / "onnx" / f"{Path(source).name}-{key}"
    if (folder / "onnx" / QUANTIZED_FILE).exists():
        return folder
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "onnx" / QUANTIZED_FILE).exists():
            return folder  # another process built it while this one waited
        log.info("exporting %s to ONNX (%s int8), once, into %s", settings.embed_model, recipe, folder)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
        try:
            _build(source, recipe, building)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(building, folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


def _build(source: str, recipe: str, folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(source, backend="onnx", device="cpu")
    except Exception as exc:  # noqa: BLE001 - optimum raises many kinds for a model it cannot export
        raise ConfigError(f"cannot export embedding model {source!r} to ONNX: {exc}") from exc
    model.save_pretrained(str(folder))
    plain = folder / "onnx" / "model.onnx"
    fused = _fused(plain, folder)
    try:
        _quantize(fused or plain, folder / "onnx" / QUANTIZED_FILE, recipe)
    finally:
        if fused:
            fused.unlink()


#: Probe texts that the fused graph must embed as the unfused one does.
_PROBES = (
    "dropvec",
    "The quick brown fox jumps over the lazy dog, twice; then it sleeps.",
    "Sections 3.1-3.4 of RFC 9110 define GET, HEAD and POST. " * 8,
)


def _fused(plain: Path, folder: Path) -> Path | None:
    """``plain`` with its transformer blocks fused by ONNX Runtime's optimizer, or None where the
    optimizer fails or the fused graph's vectors differ from the unfused graph's (cosine < 0.9999)."""
    from onnxruntime.transformers.optimizer import optimize_model

    target = plain.with_name("model_fused.onnx")
    try:
        optimize_model(
            str(plain), model_type="bert", num_heads=0, hidden_size=0, opt_level=1
        ).save_model_to_file(str(target))
        worst = min(_cosines(plain, target, folder))
    except Exception as exc:  # noqa: BLE001 - the optimizer's pattern matching raises many kinds
        log.warning("ONNX Runtime cannot fuse this model (%s): quantising it unfused", exc)
        target.unlink(missing_ok=True)
        return None
    if worst < 0.9999:
        log.warning(
            "the fused graph changes this model's vectors (cosine %.5f): quantising it unfused", worst
        )
        target.unlink()
        return None
    return target


def _cosines(a: Path, b: Path, folder: Path) -> list[float]:
    """The cosines between ``a``'s and ``b``'s mean-pooled outputs for the probe texts."""
    import numpy as np
    import onnxruntime
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(str(folder))(list(_PROBES), padding=True, return_tensors="np")
    pooled = []
    for path in (a, b):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        hidden = session.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in names})[0]
        mask = batch["attention_mask"][..., None]
        vectors = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        pooled.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return [float(c) for c in (pooled[0] * pooled[1]).sum(axis=1)]


def _quantize(source: Path, target: Path, recipe: str) -> None:
    """Dynamic int8 with optimum's preset for ``recipe`` (symmetric per-channel int8 weights, uint8
    activations; the reduced range on AVX2, where full-range weights saturate without VNNI)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        reduce_range=recipe == "avx2",
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        # fused operators (com.microsoft) defeat ONNX shape inference: their outputs are fp32
        extra_options={
            "WeightSymmetric": True,
            "ActivationSymmetric": False,
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
