"""The embedding model, loaded once per process, on the backend the settings resolve to.

``torch``      sentence-transformers on torch: CUDA (fp16, batches of 256) when a GPU is present,
               else CPU fp32.
``onnx``       the same model exported to ONNX (vectors equal to torch's), run by ONNX Runtime.
``onnx-int8``  that export with int8 dynamic quantisation: per-channel weights, MatMuls only (the
               embeddings, LayerNorm, softmax and GELU stay fp32), with the instruction set the CPU
               has (AVX-512 VNNI, AVX2 or ARM64). ``bench.quality`` measures what it costs.
               Both graphs lose the padding mask's Add (``drop_padding_mask``: nothing is padded).
``openvino``   the fp32 export on OpenVINO's CPU runtime: in bf16 with AMX, about twice the speed
               of the padded int8 measured there; in fp32 elsewhere (an AMD Zen 4 with AVX-512
               BF16 included), 0.72 times ``onnx-int8``.

The last three run in ``encoder``, without torch: a worker on them holds about 450 MB less.

ONNX exports are built from the model's own local weights, offline, once per machine, into
``cache_dir``: the first worker to need one builds it under a file lock while the others wait.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding

from dropvec.config.errors import ConfigError
from dropvec.config.settings import Settings

if TYPE_CHECKING:
    from dropvec.workers.encoder import GraphEmbedding

log = logging.getLogger(__name__)

#: Bumped when the export or quantisation recipe changes: older exports are then rebuilt.
RECIPE_VERSION = 2
QUANTIZED_FILE = "model_qint8.onnx"
#: An export of the same model that no worker on this machine loaded for this long is removed
#: when a new one is built (a new dropvec recipe, the model's files reinstalled).
STALE_EXPORT_SECONDS = 30 * 24 * 3600


def load_embedder(settings: Settings) -> BaseEmbedding:
    """Load the configured model, with the thread count of one worker process. The ONNX backends
    never import torch (see ``encoder``); only ``torch`` and a first export do."""
    threads = settings.threads_per_process()
    settings.prepare_environment()
    device = settings.resolved_device()
    backend = settings.resolved_backend()
    if backend != "torch":
        if device != "cpu":
            raise ConfigError(
                f"the {backend} backend runs on the CPU: set DROPVEC_EMBED_BACKEND=torch for {device}"
            )
        try:
            return graph_embedder(settings, backend, threads)
        except ConfigError as exc:
            if settings.embed_backend != "auto":
                raise
            log.warning("%s; using the torch backend", exc)  # a model that cannot be exported
    return torch_embedder(settings, device, threads)


def graph_embedder(settings: Settings, backend: str, threads: int) -> GraphEmbedding:
    """``backend``'s engine on the model's ONNX export, exported first if need be."""
    from dropvec.workers.encoder import OnnxRuntimeEmbedding, OpenVINOEmbedding, instructions

    folder = export_onnx(settings)
    engine = OpenVINOEmbedding if backend == "openvino" else OnnxRuntimeEmbedding
    file_name = QUANTIZED_FILE if backend == "onnx-int8" else "model.onnx"
    model = engine(
        folder, f"onnx/{file_name}", threads, embed_batch_size=settings.batch_size("cpu"),
        # by the configured name: the exported copy's path would lose the model's instructions
        **instructions(settings.embed_model_path),
    )  # fmt: skip
    log.info("loaded %s (%s) on cpu with %d thread(s)", settings.embed_model, backend, threads)
    return model


def torch_embedder(settings: Settings, device: str, threads: int) -> BaseEmbedding:
    """sentence-transformers on torch, through llama-index's ``HuggingFaceEmbedding``."""
    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    torch.set_num_threads(threads)
    options: dict[str, Any] = {}
    if device.startswith("cuda"):
        options["model_kwargs"] = torch_gpu_options()
    model = HuggingFaceEmbedding(
        model_name=settings.embed_model_path,
        device=device,
        embed_batch_size=settings.batch_size(device),
        normalize=True,
        **options,
    )
    log.info("loaded %s (torch) on %s with %d thread(s)", settings.embed_model, device, threads)
    return model


def torch_gpu_options() -> dict[str, Any]:
    """On a GPU the model runs in fp16: twice the speed of fp32 and half its memory, with cosines
    to fp32 above 0.999 for MiniLM-class encoders (not measured here: no GPU was drawn)."""
    import torch

    return {"torch_dtype": torch.float16}


def embedding_dim(model: BaseEmbedding) -> int:
    """The model's output dimension, asked of the model itself."""
    from dropvec.workers.encoder import GraphEmbedding

    if isinstance(model, GraphEmbedding) and model.dimension:
        return model.dimension
    st = getattr(model, "_model", None)  # sentence-transformers renamed the method (5.2)
    getter = getattr(st, "get_embedding_dimension", None) or getattr(
        st, "get_sentence_embedding_dimension", None
    )
    dim = getter() if getter else None
    return int(dim) if dim else len(model.get_text_embedding("dimension probe"))


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
        _used(folder)
        return folder
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "onnx" / QUANTIZED_FILE).exists():
            return folder  # another process built it while this one waited
        log.info("exporting %s to ONNX (%s int8), once, into %s", settings.embed_model, recipe, folder)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
        try:
            build_elsewhere(source, recipe, building)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(building, folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    prune_exports(folder)
    return folder


def _used(folder: Path) -> None:
    """Mark an export as loaded now (its folder's time), so that pruning keeps it."""
    with suppress(OSError):
        os.utime(folder)


def prune_exports(kept: Path, max_idle: float = STALE_EXPORT_SECONDS) -> list[Path]:
    """Remove the exports of ``kept``'s model (its siblings of the same name) that no worker
    loaded for ``max_idle`` seconds; one being built (its lock held) is left. Returns the removed."""
    from filelock import FileLock, Timeout

    name = kept.name.rpartition("-")[0]
    removed = []
    for other in kept.parent.glob(f"{glob.escape(name)}-*"):
        if other == kept or not other.is_dir() or other.name.rpartition("-")[0] != name:
            continue
        try:
            if time.time() - other.stat().st_mtime < max_idle:
                continue
            with FileLock(f"{other}.lock", timeout=0):
                shutil.rmtree(other)
            Path(f"{other}.lock").unlink(missing_ok=True)
        except (OSError, Timeout):
            continue  # in use, being built, or not ours to remove: left as it is
        log.info("removed an export no worker loaded for %d days: %s", max_idle // 86400, other)
        removed.append(other)
    return removed


def build_elsewhere(source: str, recipe: str, folder: Path) -> None:
    """Export in a child process: the export needs torch and sentence-transformers, and a worker
    that imported them would keep their 450 MB for the rest of its life."""
    done = subprocess.run(
        [sys.executable, "-m", "dropvec.workers.embed", source, recipe, str(folder)],
        capture_output=True, text=True, check=False, env=os.environ | {"TQDM_DISABLE": "1"},
    )  # fmt: skip
    if done.returncode:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise ConfigError(lines[-1].removeprefix("dropvec.config.errors.ConfigError: "))


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
    tokenized = [model.tokenizer(text, return_tensors="np") for text in PROBES]
    probes = [{k: v.astype("int64") for k, v in arrays.items()} for arrays in tokenized]
    for graph in ("model.onnx", QUANTIZED_FILE):
        try:
            drop_padding_mask(folder / "onnx" / graph, probes)
        except Exception:  # noqa: BLE001 - a speed-up only: the graph stays as exported
            log.warning("%s: the padding mask could not be taken out; kept", graph, exc_info=True)


#: Texts run through a graph before and after ``drop_padding_mask``, whose outputs must agree.
PROBES = ("Otters hold hands.", "The quick brown fox jumps over the lazy dog, twice: " * 6)


def drop_padding_mask(path: Path, probes: list[dict[str, Any]]) -> bool:
    """Take the padding mask out of the attention scores of the graph at ``path``, in place.

    The encoder never pads (texts of one length run together), so its ``attention_mask`` is all
    ones, and each ``scores + mask_bias`` before a Softmax adds zeros: 4% of the int8 graph's time
    on 256-token chunks (AMD Zen 4, ORT 1.32). Each Add that feeds a Softmax, with one side
    computed from ``attention_mask`` and the other not, is bypassed. The graph is kept only if
    its outputs on ``probes`` (the tokenizer's arrays, batch 1) are those of the original: a mask
    that holds more than padding (a causal one) changes them, and that graph is left as it was.
    Returns whether the graph was changed."""
    import numpy as np
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    nodes = model.graph.node
    made_by = {out: node for node in nodes for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def from_mask(name: str) -> bool:
        todo, seen = [name], set()
        while todo:
            current = todo.pop()
            if current == "attention_mask":
                return True
            if current in seen or current not in made_by:
                continue
            seen.add(current)
            todo += [i for i in made_by[current].input if i]
        return False

    changed = False
    for node in list(nodes):  # (in the graph's order: once a layer's Add is bypassed, the next
        # layer's scores no longer depend on the mask through it)
        if node.op_type != "Add" or not any(r.op_type == "Softmax" for r in readers.get(node.output[0], [])):
            continue
        sides = [from_mask(name) for name in node.input]
        if len(sides) != 2 or sides.count(True) != 1:
            continue
        kept = node.input[sides.index(False)]
        for reader in readers[node.output[0]]:
            for i, name in enumerate(reader.input):
                if name == node.output[0]:
                    reader.input[i] = kept
        readers.setdefault(kept, []).extend(readers.pop(node.output[0]))  # (they read it now)
        nodes.remove(node)
        changed = True
    if not changed:
        return False

    def outputs(graph: bytes) -> list[Any]:
        session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        return [session.run(None, {k: v for k, v in p.items() if k in names})[0] for p in probes]

    before, after = outputs(path.read_bytes()), outputs(model.SerializeToString())
    if not all(np.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(before, after, strict=True)):
        log.info("%s: the attention mask holds more than padding; kept", path.name)
        return False
    onnx.save(model, str(path))
    return True


if __name__ == "__main__":  # the child process of build_elsewhere: SOURCE RECIPE FOLDER
    _build(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
