"""The embedding model's window, measured with the model's own tokenizer.

Only the tokenizer and config files are loaded here, never the weights: the producer stays small.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from dropvec.config.errors import ConfigError


@dataclass(frozen=True)
class TokenWindow:
    """Counts tokens the way the model does and knows how many fit in one input.

    ``budget`` is the model's maximum sequence length less the special tokens
    (``[CLS]``/``[SEP]``) that the model adds to every input. ``tokenizer`` is the Rust
    ``tokenizers.Tokenizer`` behind the model's fast tokenizer, with truncation and padding off.

    ``additive``: the tokenizer splits at whitespace before anything else (BERT's WordPiece, as in
    the bundled model and most sentence-transformers), so a text's tokens are its
    whitespace-separated parts' tokens, and parts need not be tokenized again to be counted.
    """

    tokenizer: Tokenizer
    budget: int
    additive: bool = False

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def measure(self, text: str) -> Measured:
        """``text`` tokenized once, to count it and its parts (see ``Measured``)."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        return Measured(self, text, [start for start, _ in offsets])

    def split_to_fit(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` at token boundaries into pieces of at most ``max_tokens`` tokens."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        pieces = []
        for start in range(0, len(offsets), max_tokens):
            begin = offsets[start][0]
            end = offsets[start + max_tokens][0] if start + max_tokens < len(offsets) else len(text)
            pieces.append(text[begin:end])
        return [p for p in pieces if p.strip()]


class Measured:
    """A text tokenized once: its token count, and the counts of its parts from the same tokens.

    A part found in the text between whitespace is counted from the text's own tokens when the
    window is ``additive``; any other part is tokenized again. Parts are looked for from where the
    last one was found, as a splitter walks the text from its start.
    """

    def __init__(self, window: TokenWindow, text: str, starts: list[int]) -> None:
        self.window, self.text, self.starts = window, text, starts
        self.total = len(starts)
        self._at = 0

    def count(self, part: str) -> int:
        if self.window.additive:
            at = self.text.find(part, self._at)
            if at < 0:
                at = self.text.find(part)
            end = at + len(part)
            if at >= 0 and self._between_spaces(at, end):
                self._at = at
                return bisect_left(self.starts, end) - bisect_left(self.starts, at)
        return self.window.count(part)

    def _between_spaces(self, begin: int, end: int) -> bool:
        text = self.text

        def edge(i: int) -> bool:
            return i in (0, len(text)) or text[i - 1] in SPACES or text[i] in SPACES

        return edge(begin) and edge(end)


#: Whitespace to every tokenizer (BERT's normalizer deletes some of what Python calls whitespace).
SPACES = frozenset(" \t\n\r")


#: Pre-tokenizers that split at whitespace (and then, perhaps, within the words).
WHITESPACE_FIRST = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


def splits_at_whitespace_first(tokenizer: Tokenizer) -> bool:
    state = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
    if state.get("type") == "Sequence":
        state = (state.get("pretokenizers") or [{}])[0]
    return state.get("type") in WHITESPACE_FIRST


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
    additive = splits_at_whitespace_first(tokenizer)
    return TokenWindow(tokenizer=tokenizer, budget=int(max_len) - specials, additive=additive)


def _converted(model: str) -> Tokenizer:
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(model)
    if not getattr(slow, "is_fast", False):
        raise ValueError("it has no fast (Rust) tokenizer; dropvec needs one")
    return Tokenizer.from_str(slow.backend_tokenizer.to_str())
