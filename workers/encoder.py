"""The ``onnx``, ``onnx-int8`` and ``openvino`` backends: the model's ONNX export run by ONNX Runtime
or by OpenVINO's CPU runtime, as llama-index embedding models, without torch.

sentence-transformers (and llama-index's ``HuggingFaceEmbedding`` over it) would run the same
graph, but importing it brings torch and transformers into every worker: about 450 MB of a
worker's memory for a model of 23 MB. Here the graph's engine, the ``tokenizers`` library and
numpy do the whole job, and the pooling and normalisation of the model's sentence-transformers
configuration (its ``1_Pooling`` and ``2_Normalize`` modules) are applied as it applies them.
``bench.quality`` measures each backend against torch's vectors.

OpenVINO picks the CPU's precision for the fp32 graph: bf16 with AMX, where it ran twice as fast
as the padded int8 of the day, and ``auto`` takes it there; fp32 elsewhere, an AMD EPYC with
AVX-512 BF16 included (its vectors equal torch's there), where ``onnx-int8`` on VNNI ran 1.38
times as fast and stays the default, as on every other CPU. sentence-transformers' own OpenVINO
backend needs optimum-intel, whose releases pin another torch and optimum; the runtime alone
needs neither.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from dropvec.config.errors import ConfigError
from dropvec.config.models import window_length

#: Compiled kernels the OpenVINO CPU plugin keeps, one per input shape (batch × tokens). OpenVINO's
#: default, 5,000, lets a worker grow for hours: measured on batches of random shapes, RSS went
#: 682 → 1,105 MB in 400 batches and still climbing; with 50 it levels at about 935 MB, same speed.
SHAPE_CACHE = 50

#: ONNX Runtime graph rewrites left out. ``SkipLayerNormFusion`` folds each residual Add (with the
#: dense layer's bias) and the LayerNorm after it into one SkipLayerNormalization, whose CPU kernel
#: took 14% of the int8 graph's time, ten times the plain LayerNormalization's per call (ORT 1.32's
#: profiler, 256-token chunks, AMD Zen 4); unfused, the int8 encode ran 8-17% faster, recall@5 the
#: same and the vectors as close to fp32's; the fp32 graph ran at the same speed either way.
UNFUSED = ("SkipLayerNormFusion",)

#: Tokens one ONNX Runtime run holds at most, per thread: texts of one length run together only
#: up to it. A larger run spills the CPU's caches and gets slower per token: MiniLM int8, one
#: thread, 64 texts of each length (AMD Zen 4; chunks/s by texts a run):
#:
#:   tokens  1 a run   2     4     8     16    32
#:   256       75     74    70    65    61    58
#:   128      164    179   181   179   153   141
#:    64      365    375   381   390   382   325
#:    16     1229   1354  1404  1499  1567  1603
#:
#: With two threads the best runs held about twice as many tokens (256 tokens: 2 a run; 128: 8);
#: the fp32 graph's best runs held 256 to 512 tokens too. OpenVINO's CPU plugin is the other way
#: (fp32, one thread: 256 tokens 59 chunks/s alone, 64 at 16 a run), so it keeps whole batches.
#: On the seed corpus's chunks, most within a few tokens of the window, the worker's encode ran
#: 2.3% faster than with runs of up to ``embed_batch_size`` (85.6 against 83.7 chunks/s, four
#: rounds in turns); on the public corpus's, whose lengths rarely repeat, the same (113.3, 112.8).
TOKENS_PER_RUN_PER_THREAD = 512

#: Pooling modes of sentence-transformers' ``Pooling`` module that these backends apply.
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
            raise ConfigError(f"this backend cannot apply the module {kind!r} of {folder}")
    if mode not in POOLING:
        raise ConfigError(f"this backend cannot apply the pooling {mode!r} of {folder}")
    return mode, normalize


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def max_seq_length(folder: Path) -> int:
    """The tokens the model in ``folder`` reads: the producer's rule (``window_length``)."""
    names = ("sentence_bert_config.json", "tokenizer_config.json", "config.json")
    return window_length(*(_json(folder / name) for name in names))


def load_tokenizer(folder: Path, max_length: int) -> Any:
    """The model's fast tokenizer (``tokenizer.json``), truncating as sentence-transformers
    does: to ``max_length`` tokens, special tokens included. It never pads (see ``_embed``)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # noqa: BLE001 - the Rust library raises its own kinds
        raise ConfigError(f"{folder} has no fast tokenizer (tokenizer.json): {exc}") from exc
    config = _json(folder / "tokenizer_config.json")
    tokenizer.enable_truncation(max_length, direction=config.get("truncation_side", "right"))
    tokenizer.no_padding()
    return tokenizer


def _llama_index_hf_utils() -> ModuleType:
    """llama-index's ``huggingface.utils`` (each model name's instructions), loaded from its file:
    importing it as a module runs its package's ``__init__``, which imports sentence-transformers."""
    spec = importlib.util.find_spec("llama_index.embeddings.huggingface")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("llama-index-embeddings-huggingface is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils.py"
    utils_spec = importlib.util.spec_from_file_location("_dropvec_llama_index_hf_utils", path)
    assert utils_spec is not None and utils_spec.loader is not None
    module = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(module)
    return module


def instructions(model_name: str) -> dict[str, str]:
    """The query and text instructions llama-index's ``HuggingFaceEmbedding`` puts before texts
    for ``model_name`` (BGE and Instructor models have them; most have none)."""
    utils = _llama_index_hf_utils()
    return {
        "query_instruction": utils.get_query_instruct_for_model_name(model_name),
        "text_instruction": utils.get_text_instruct_for_model_name(model_name),
    }


def run_size(length: int, tokens_per_run: int | None, batch_size: int) -> int:
    """Texts of ``length`` tokens one run of the graph takes: at most ``batch_size``, and as
    many as ``tokens_per_run`` holds (None: no such limit), at least one."""
    if tokens_per_run is None:
        return max(1, batch_size)
    return max(1, min(batch_size, tokens_per_run // max(1, length)))


class GraphEmbedding(BaseEmbedding):
    """Sentence embeddings from an ONNX export, batched by length; subclasses run the graph."""

    max_length: int = 512
    query_instruction: str | None = None
    text_instruction: str | None = None
    dimension: int = 0
    #: Tokens one run of the graph holds at most (None: ``embed_batch_size`` texts, whatever
    #: their length).
    tokens_per_run: int | None = None
    _tokenizer: Any = PrivateAttr()
    _pooling: str = PrivateAttr()
    _inputs: set[str] = PrivateAttr()

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        super().__init__(model_name=str(folder), **kwargs)
        self._pooling, _ = pooling_of(folder)
        self.max_length = max_seq_length(folder)
        self._tokenizer = load_tokenizer(folder, self.max_length)
        self.dimension = int(_json(folder / "config.json").get("hidden_size") or 0)

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's first output (token embeddings, batch × tokens × dimension)."""
        raise NotImplementedError

    def _embed(self, texts: list[str]) -> list[list[float]]:
        """Texts of the same token count run together, up to ``embed_batch_size`` and as many as
        ``tokens_per_run`` holds (at least one); the others one at a time. Nothing is padded: on
        a CPU padding cost more than batching saves (measured on the public corpus's chunks: one
        text a run is 1.6 times batches of 32 sorted by length, at a third of the memory), and an
        int8 graph's vector of a text then depends on no other text but those of its own length."""
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts])  # as sentence-transformers
        by_length: dict[int, list[int]] = {}
        for i, encoding in enumerate(encodings):
            by_length.setdefault(len(encoding.ids), []).append(i)
        out: list[list[float]] = [[] for _ in texts]
        for length, same in by_length.items():
            size = run_size(length, self.tokens_per_run, self.embed_batch_size)
            for start in range(0, len(same), size):
                batch = same[start : start + size]
                for i, vector in zip(batch, self._encode([encodings[i] for i in batch]), strict=True):
                    out[i] = vector.tolist()
        return out

    def _encode(self, encodings: list[Any]) -> np.ndarray:
        """Pooled, normalised vectors of encodings of one length."""
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}  # (one length: no padding)
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        tokens = self._run({k: v for k, v in feed.items() if k in self._inputs})
        if self._pooling == "cls":
            pooled = tokens[:, 0]
        elif self._pooling == "max":
            pooled = tokens.max(axis=1)
        else:
            pooled = tokens.mean(axis=1)
        # normalised whatever the model's own modules say, as the torch backend's vectors are
        # (HuggingFaceEmbedding(normalize=True)): all share one collection
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)

    # the instructions go before the text as llama-index's HuggingFaceEmbedding puts them
    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([f"{self.query_instruction or ''} {query}".strip()])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed([f"{self.text_instruction or ''} {t}".strip() for t in texts])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


def ort_session(path: Path, threads: int, optimized_to: Path | None = None) -> Any:
    """An ONNX Runtime CPU session on the graph at ``path``, as a worker runs it (``optimized_to``:
    where to save the graph ONNX Runtime actually runs, for a test to read)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle threads sleep rather than spin: on a small machine the producer and Milvus need the
    # cores between the model's operators (measured: +7% end to end, no loss in the model's speed).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED)
    )


class OnnxRuntimeEmbedding(GraphEmbedding):
    """The graph on ONNX Runtime's CPU provider."""

    _session: Any = PrivateAttr()

    def __init__(self, folder: Path, onnx_file: str, threads: int, **kwargs: Any) -> None:
        super().__init__(folder, tokens_per_run=TOKENS_PER_RUN_PER_THREAD * threads, **kwargs)
        self._session = ort_session(folder / onnx_file, threads)
        self._inputs = {i.name for i in self._session.get_inputs()}

    @classmethod
    def class_name(cls) -> str:
        return "OnnxRuntimeEmbedding"

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run(None, inputs)[0])


class OpenVINOEmbedding(GraphEmbedding):
    """The graph on OpenVINO's CPU plugin."""

    _compiled: Any = PrivateAttr()

    def __init__(self, folder: Path, onnx_file: str, threads: int, **kwargs: Any) -> None:
        import openvino

        super().__init__(folder, **kwargs)
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

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._compiled(inputs)[0])
