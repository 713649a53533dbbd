"""The ``openvino`` backend: the model's ONNX export run by OpenVINO's CPU runtime, as a llama-index
embedding model.

OpenVINO runs the same fp32 graph as ``onnx`` but picks the CPU's fastest precision for it: bf16 on
CPUs that have it (AVX-512 BF16, AMX), which matters more than int8 weights on those; fp32 on the
others (and ``auto`` then keeps ``onnx-int8``). sentence-transformers' own OpenVINO backend needs
optimum-intel, whose releases pin another torch and optimum; the runtime alone needs none of them,
so the pooling and normalisation of the model's sentence-transformers configuration (the
``1_Pooling`` and ``2_Normalize`` modules) are applied here. ``bench.quality`` measures the cost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.embeddings.huggingface.utils import format_query, format_text
from pydantic import PrivateAttr

from dropvec.config.errors import ConfigError

#: Compiled kernels the CPU plugin keeps, one per input shape (batch × tokens). OpenVINO's default,
#: 5,000, lets a worker grow for hours: measured on batches of random shapes, RSS went 682 → 1,105 MB
#: in 400 batches and still climbing; with 50 it levels at about 935 MB, at the same speed.
SHAPE_CACHE = 50

#: Pooling modes of sentence-transformers' ``Pooling`` module that this backend applies.
POOLING = ("mean", "cls", "max")


def pooling_of(folder: Path) -> tuple[str, bool]:
    """The model's pooling mode and whether it normalises, from its sentence-transformers files."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder} has no sentence-transformers modules.json: {exc}") from exc
    mode, normalize = "", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            config = json.loads((folder / module["path"] / "config.json").read_text())
            flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                     "max": "pooling_mode_max_tokens"}  # fmt: skip
            mode = config.get("pooling_mode") or next(
                (m for m, flag in flags.items() if config.get(flag)), ""
            )
        elif kind.endswith("Normalize"):
            normalize = True
        elif not kind.endswith("Transformer"):
            raise ConfigError(f"the openvino backend cannot apply the module {kind!r} of {folder}")
    if mode not in POOLING:
        raise ConfigError(f"the openvino backend cannot apply the pooling {mode!r} of {folder}")
    return mode, normalize


def max_seq_length(folder: Path, tokenizer: Any) -> int:
    """The tokens the model reads, as sentence-transformers sets it (what the producer cuts
    chunks to), else the tokenizer's limit, else 512."""
    try:
        configured = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError):
        configured = None
    limit = getattr(tokenizer, "model_max_length", None)
    return int(configured or (limit if limit and limit < 100_000 else 512))


class OpenVINOEmbedding(BaseEmbedding):
    """Sentence embeddings from an ONNX export on OpenVINO's CPU plugin, batched by length."""

    max_length: int = 512
    query_instruction: str | None = None
    text_instruction: str | None = None
    _compiled: Any = PrivateAttr()
    _inputs: set[str] = PrivateAttr()
    _tokenizer: Any = PrivateAttr()
    _pooling: str = PrivateAttr()

    def __init__(self, folder: Path, onnx_file: str, threads: int, **kwargs: Any) -> None:
        import openvino
        from transformers import AutoTokenizer

        super().__init__(model_name=str(folder), **kwargs)
        self._pooling, _ = pooling_of(folder)
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.max_length = max_seq_length(folder, self._tokenizer)
        core = openvino.Core()
        model = core.read_model(str(folder / onnx_file))
        # Unpinned: a worker shares the cores with the producer, Milvus and the other workers, and
        # OpenVINO pins each process's threads from the first core on (measured: two single-threaded
        # workers on 2 cores ran at 95/s each pinned, 200/s each unpinned).
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
            "CPU_RUNTIME_CACHE_CAPACITY": SHAPE_CACHE,
        }
        self._compiled = core.compile_model(model, "CPU", config)
        self._inputs = {i.get_any_name() for i in self._compiled.inputs}

    @classmethod
    def class_name(cls) -> str:
        return "OpenVINOEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # like lengths: little padding
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.embed_batch_size):
            batch = order[start : start + self.embed_batch_size]
            for i, vector in zip(batch, self._encode([texts[i] for i in batch]), strict=True):
                out[i] = vector.tolist()
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        tokens = self._compiled({k: v for k, v in enc.items() if k in self._inputs})[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        if self._pooling == "cls":
            pooled = tokens[:, 0]
        elif self._pooling == "max":
            pooled = np.where(mask > 0, tokens, -np.inf).max(axis=1)
        else:
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        # normalised whatever the model's own modules say, as the other backends' vectors are
        # (HuggingFaceEmbedding(normalize=True)): all share one collection
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)

    # (the instructions are put before the text as llama-index's HuggingFaceEmbedding puts them)
    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([format_query(query, None, self.query_instruction or "")])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed([format_text(t, None, self.text_instruction or "") for t in texts])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)
