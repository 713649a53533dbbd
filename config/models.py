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


#: Bumped when the way the producer makes a chunk's token ids changes: a worker takes ids only
#: from a producer of its own scheme and tokenizer (``tokenizer_key``), else tokenizes the text.
TOKEN_IDS_SCHEME = 1


def tokenizer_key(tokenizer: Any) -> str:
    """What makes a ``tokenizers.Tokenizer``'s ids of a text: its normalizer, pre-tokenizer,
    model and added tokens (not its truncation, padding or special-token template, which the
    worker applies itself), with the scheme and the width ids are packed in (``id_dtype``)."""
    import hashlib
    import json

    state = json.loads(tokenizer.to_str())
    parts = {k: state.get(k) for k in ("added_tokens", "normalizer", "pre_tokenizer", "model")}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{TOKEN_IDS_SCHEME}-{id_dtype(tokenizer).lstrip('<')}-{digest}"


def id_dtype(tokenizer: Any) -> str:
    """The numpy type a chunk's token ids are packed in: two bytes a token where the
    vocabulary allows it (BERT's 30,522), else four."""
    return "<u2" if tokenizer.get_vocab_size(with_added_tokens=True) <= 2**16 else "<u4"
