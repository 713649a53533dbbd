"""What a model's own config files say, read the same way by the producer and the workers."""

from __future__ import annotations

from typing import Any


def window_length(
    st_config: dict[str, Any], tokenizer_config: dict[str, Any], model_config: dict[str, Any]
) -> int:
    """The tokens a model reads, special tokens included, from its three config files: the
    ``max_seq_length`` sentence-transformers sets, else the lower of the tokenizer's limit and
    the model's positions (a tokenizer's "no limit", 1e30, is not one), else 512. The producer
    cuts chunks to it and the ONNX and OpenVINO encoders truncate at it: one rule for both."""
    configured = st_config.get("max_seq_length")
    if isinstance(configured, int) and configured > 0:
        return configured
    limits = (tokenizer_config.get("model_max_length"), model_config.get("max_position_embeddings"))
    known = [c for c in limits if isinstance(c, int) and 0 < c < 100_000]
    return min(known) if known else 512
