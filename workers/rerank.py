"""Optional reranking: a cross-encoder (``DROPVEC_RERANK_MODEL``) reads the question with each
candidate passage and re-scores it; the search keeps the top k by that score.

sentence-transformers' ``CrossEncoder`` does the scoring, as in llama-index's
``SentenceTransformerRerank`` (which draws a progress bar per search, and so is not used). A model
is loaded once per process (the API serves many searches with it); its candidates are the fused
top ``DROPVEC_RERANK_DEPTH`` of the search.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.schema import MetadataMode, NodeWithScore

from dropvec.config.errors import ConfigError
from dropvec.config.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)

#: One model call at a time per process: a torch model is not safe to call from two threads.
_calls = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str) -> CrossEncoder:
    from sentence_transformers import CrossEncoder

    try:
        model = CrossEncoder(path, device=device, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the rerank model {path!r} (DROPVEC_RERANK_MODEL): {exc}") from exc
    log.info("loaded the rerank model %s on %s", path, device)
    return model


def load_reranker(settings: Settings) -> CrossEncoder:
    """The configured cross-encoder, loaded on first use."""
    path = settings.rerank_model_path
    if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
        raise ConfigError(f"the rerank model {path!r} (DROPVEC_RERANK_MODEL) does not exist")
    settings.prepare_environment(quiet=True)
    return _load(path, settings.resolved_device())


def rerank(settings: Settings, question: str, found: list[NodeWithScore], k: int) -> list[NodeWithScore]:
    """The ``k`` best of ``found`` by the cross-encoder's score of (question, passage), which
    becomes their score."""
    if not found:
        return []
    model = load_reranker(settings)
    pairs: list[Any] = [(question, n.node.get_content(metadata_mode=MetadataMode.EMBED)) for n in found]
    with _calls:
        scores = model.predict(pairs, show_progress_bar=False)
    ranked = sorted(zip(scores, found, strict=True), key=lambda pair: -float(pair[0]))[:k]
    return [NodeWithScore(node=n.node, score=float(score)) for score, n in ranked]
