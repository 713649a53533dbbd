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


def _read_json(model: str, filename: str) -> dict[str, Any] | None:
    """A model file from a local folder or the Hugging Face cache (``HF_HUB_OFFLINE`` honoured)."""
    local = Path(model)
    if local.is_dir():
        path = local / filename
        return json.loads(path.read_text()) if path.exists() else None
    from transformers.utils import cached_file

    found = cached_file(model, filename, _raise_exceptions_for_missing_entries=False)
    return json.loads(Path(found).read_text()) if found else None


@lru_cache(maxsize=4)
def load_window(model: str) -> TokenWindow:
    """The window of ``model`` (a local path or Hugging Face name)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer of embedding model {model!r}: {exc}") from exc
    st_config = _read_json(model, "sentence_bert_config.json") or {}
    max_len = st_config.get("max_seq_length")
    if not max_len:
        hf_config = _read_json(model, "config.json") or {}
        candidates = [tokenizer.model_max_length, hf_config.get("max_position_embeddings")]
        max_len = min(c for c in candidates if isinstance(c, int) and 0 < c < 1_000_000)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"embedding model {model!r} has no fast (Rust) tokenizer; dropvec needs one")
    rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    rust.no_truncation()
    rust.no_padding()
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    return TokenWindow(tokenizer=rust, budget=int(max_len) - specials)
