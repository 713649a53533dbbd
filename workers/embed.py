"""The embedding model, loaded once per process, on the backend the settings resolve to.

``torch``      sentence-transformers on torch: CUDA (fp16, batches of 256) when a GPU is present,
               else CPU fp32.
``onnx``       the same model exported to ONNX (vectors equal to torch's), run by ONNX Runtime.
``onnx-int8``  that export with int8 dynamic quantisation: per-channel weights, MatMuls only (the
               embeddings, LayerNorm, softmax and GELU stay fp32), with the instruction set the CPU
               has (AVX-512 VNNI, AVX2 or ARM64). ``bench.quality`` measures what it costs.
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
RECIPE_VERSION = 1
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
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    try:
        model = SentenceTransformer(source, backend="onnx", device="cpu")
    except Exception as exc:  # noqa: BLE001 - optimum raises many kinds for a model it cannot export
        raise ConfigError(f"cannot export embedding model {source!r} to ONNX: {exc}") from exc
    model.save_pretrained(str(folder))
    preset = getattr(AutoQuantizationConfig, recipe)
    options: dict[str, Any] = {"is_static": False, "per_channel": True, "operators_to_quantize": ["MatMul"]}
    if recipe == "avx2":
        options["reduce_range"] = True
    config = preset(**options)
    export_dynamic_quantized_onnx_model(model, config, str(folder), file_suffix="qint8")
