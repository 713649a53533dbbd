"""The embedding model's window, measured with the model's own tokenizer.

Only the tokenizer and config files are loaded here, never the weights: the producer stays small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from dropvec.errors import ConfigError


@dataclass(frozen=True)
class TokenWindow:
    """Counts tokens the way the model does and knows how many fit in one input.

    ``budget`` is the model's maximum sequence length less the special tokens
    (``[CLS]``/``[SEP]``) that the model adds to every input. ``tokenizer`` is the Rust
    ``tokenizers.Tokenizer`` behind the model's fast tokenizer, with truncation and padding off.
    """

    tokenizer: Tokenizer
    budget: int

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def split_to_fit(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` at token boundaries into pieces of at most ``max_tokens`` tokens."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        pieces = []
        for start in range(0, len(offsets), max_tokens):
            begin = offsets[start][0]
            end = offsets[start + max_tokens][0] if start + max_tokens < len(offsets) else len(text)
            pieces.append(text[begin:end])
        return [p for p in pieces if p.strip()]


def _model_file(model: str, filename: str) -> Path | None:
    """A file of the model, from its local folder or the Hugging Face cache (``HF_HUB_OFFLINE``
    honoured); None if the model has no such file."""
    local = Path(model)
    if local.is_dir():
        path = local / filename
        return path if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(model, filename))
    except EntryNotFoundError:
        return None


def _read_json(model: str, filename: str) -> dict[str, Any]:
    path = _model_file(model, filename)
    return json.loads(path.read_text()) if path else {}


@lru_cache(maxsize=4)
def load_window(model: str) -> TokenWindow:
    """The window of ``model`` (a local path or Hugging Face name).

    The model's ``tokenizer.json`` is loaded with ``tokenizers`` alone: importing ``transformers``
    would bring torch into the producer (about 400 MB). A model without one (a slow tokenizer's
    vocabulary only) is converted by ``transformers``.
    """
    try:
        found = _model_file(model, "tokenizer.json")
        tokenizer = Tokenizer.from_file(str(found)) if found else _converted(model)
        st_config = _read_json(model, "sentence_bert_config.json")
        max_len = st_config.get("max_seq_length")
        if not max_len:
            model_max = _read_json(model, "tokenizer_config.json").get("model_max_length")
            positions = _read_json(model, "config.json").get("max_position_embeddings")
            max_len = min(c for c in (model_max, positions, 1_000_000) if isinstance(c, int) and c > 0)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer of embedding model {model!r}: {exc}") from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    post = tokenizer.post_processor
    specials = post.num_special_tokens_to_add(False) if post is not None else 0
    return TokenWindow(tokenizer=tokenizer, budget=int(max_len) - specials)


def _converted(model: str) -> Tokenizer:
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(model)
    if not getattr(slow, "is_fast", False):
        raise ValueError("it has no fast (Rust) tokenizer; dropvec needs one")
    return Tokenizer.from_str(slow.backend_tokenizer.to_str())
