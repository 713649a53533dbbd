"""The embedding model's window, measured with the model's own tokenizer.

Only the tokenizer and config files are loaded here, never the weights: the producer stays small.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from dropvec.config.errors import ConfigError
from dropvec.config.models import window_length

#: Words whose token counts a window keeps; past this the cache starts again (about 45 MB, and as
#: much again at most for the word pieces' cache: the public corpus's 1,367 files hold 212,000
#: distinct words).
CACHE_WORDS = 500_000
#: New words tokenized in one call, at most (joined at spaces).
ENCODE_WORDS = 512
#: A run of characters between the whitespace every tokenizer splits at (``SPACES``).
WORD = re.compile(r"[^ \t\n\r]+")
GAPS = re.compile(r"([ \t\n\r]+)")
#: Characters past which a text is taken for one to be cut (a speed choice only: counts are exact).
LONG = 4096


@dataclass(frozen=True)
class TokenWindow:
    """Counts tokens the way the model does and knows how many fit in one input.

    ``budget`` is the model's maximum sequence length less the special tokens
    (``[CLS]``/``[SEP]``) that the model adds to every input. ``tokenizer`` is the Rust
    ``tokenizers.Tokenizer`` behind the model's fast tokenizer, with truncation and padding off.

    ``additive``: the tokenizer splits at whitespace before anything else (BERT's WordPiece, as in
    the bundled model and most sentence-transformers), so a text's tokens are its
    whitespace-separated words' tokens. Such a window counts a text word by word, each distinct
    word tokenized once and its count remembered: text repeats its words, and a dictionary look-up
    is some twenty times cheaper than tokenizing the word again. The counts are exact.
    """

    tokenizer: Tokenizer
    budget: int
    additive: bool = False
    _words: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: Counts words without the whole tokenizer's pipeline (BERT's only).
    _bert: BertWords | None = field(default=None, compare=False, repr=False)

    def count(self, text: str) -> int:
        if self.additive:
            return sum(self._counts(WORD.findall(text)))
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def measure(self, text: str) -> Measured:
        """``text`` tokenized once, to count it and its parts (see ``Measured``)."""
        if self.additive:
            # a text longer than a chunk could be will be cut: its words are placed now, others
            # only if their parts are counted
            return Measured(self, text, *self._by_word(text)) if len(text) > LONG else Measured(self, text)
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        starts = np.array([start for start, _ in offsets], dtype=np.int64)
        return Measured(self, text, starts, np.arange(len(offsets) + 1))

    def _by_word(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Where each word of ``text`` starts, and the tokens before each (and after the last)."""
        parts = GAPS.split(text)  # word, gap, word, ..., word: the first and last may be ""
        ends = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))
        counts = self._counts(parts[::2])
        return np.concatenate(([0], ends[1::2])), np.cumsum([0, *counts])

    def _counts(self, words: list[str]) -> list[int]:
        known = self._words
        try:  # (most texts hold no word new to the window)
            return list(map(known.__getitem__, words))
        except KeyError:
            pass
        missing = list(set(words).difference(known))
        if missing:
            if len(known) + len(missing) > CACHE_WORDS:
                known.clear()
                missing = list(set(words))
            if self._bert is not None:
                missing = self._bert.count(missing, known)
            # a few calls for all of them, each some hundreds of words joined at spaces (which an
            # additive window splits at): each call into the tokenizer costs as much as a word,
            # and one call's cost per word grows with its length (40 us a word at 60,000 words)
            for first in range(0, len(missing), ENCODE_WORDS):
                part = missing[first : first + ENCODE_WORDS]
                starts = np.cumsum([0, *(len(w) + 1 for w in part)])
                encoding = self.tokenizer.encode(" ".join(part), add_special_tokens=False)
                tokens = np.array([start for start, _ in encoding.offsets], dtype=np.int64)
                known.update(zip(part, np.diff(np.searchsorted(tokens, starts)).tolist(), strict=False))
        return list(map(known.__getitem__, words))

    def split_to_fit(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` at token boundaries into pieces of at most ``max_tokens`` tokens."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        pieces = []
        for start in range(0, len(offsets), max_tokens):
            begin = offsets[start][0]
            end = offsets[start + max_tokens][0] if start + max_tokens < len(offsets) else len(text)
            pieces.append(text[begin:end])
        return [p for p in pieces if p.strip()]


class BertWords:
    """Token counts of words as BERT's tokenizer makes them, at a fraction of its cost: the
    ``tokenizers`` pipeline spends most of its time on offsets and alignments that a count does
    not need (some 2.5 us a token; its WordPiece model alone, 0.5 us a word).

    BERT's pipeline is a normalizer, a pre-tokenizer and the WordPiece model, each of which works
    on one word at a time once the text is cut at whitespace. For a word of printable ASCII the
    normalizer only lower-cases (if it does), and the pre-tokenizer cuts it into runs of letters
    and digits and single punctuation marks (every other printable ASCII character): that is done
    here in Python. Any other word goes through the pipeline's own normalizer and pre-tokenizer,
    called apart (accents, CJK, control characters). Either way the model then counts each
    piece, each piece counted once and remembered. Exact, by construction and by a test against
    the whole pipeline; a word holding a special token's text (``[CLS]``, in any case), which the
    pipeline would match whole, is left to the pipeline.
    """

    PIECES = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")

    def __init__(self, tokenizer: Tokenizer, lowercase: bool) -> None:
        self.model, self.lowercase = tokenizer.model, lowercase
        self.normalizer, self.pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
        specials = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.content]
        #: A special token's text, in any case (one search a word, not one per special token).
        self.specials = re.compile("|".join(map(re.escape, specials)), re.IGNORECASE) if specials else None
        self._pieces: dict[str, int] = {}

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> BertWords | None:
        """Counts for ``tokenizer`` if it is BERT's pipeline (else None: it is used whole)."""
        state = json.loads(tokenizer.to_str())
        normalizer = state.get("normalizer") or {}
        model = state.get("model") or {}
        if (
            normalizer.get("type") != "BertNormalizer"
            or (state.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
            or model.get("type") != "WordPiece"
        ):
            return None
        return cls(tokenizer, bool(normalizer.get("lowercase", True)))

    def count(self, words: list[str], known: dict[str, int]) -> list[str]:
        """Put the counts of ``words`` in ``known``; those holding a special token's text are
        returned, for the whole pipeline."""
        rest = []
        pieces, tokenize = self._pieces, self.model.tokenize
        if len(pieces) > CACHE_WORDS:
            pieces.clear()
        specials, lowercase = self.specials, self.lowercase
        for word in words:
            if specials and specials.search(word):
                rest.append(word)
                continue
            if word.isalnum() and word.isascii():  # (one run of letters and digits: most words)
                runs: Iterable[str] = (word.lower() if lowercase else word,)
            elif word.isascii() and word.isprintable():
                runs = self.PIECES.findall(word.lower() if lowercase else word)
            else:
                normalized = self.normalizer.normalize_str(word)
                runs = [p for p, _ in self.pre_tokenizer.pre_tokenize_str(normalized)]
            total = 0
            for piece in runs:
                n = pieces.get(piece)
                if n is None:
                    n = pieces[piece] = len(tokenize(piece))
                total += n
            known[word] = total
        return rest


class Measured:
    """A text tokenized once: its token count, and the counts of its parts from the same count.

    ``starts`` are where the text's units begin (its words, for an additive window; its tokens
    otherwise) and ``before[i]`` the tokens in the units before unit ``i``. A span between
    whitespace is counted from them (``span``); so is a part found in the text between whitespace
    (``count``), looked for from where the last one was found, as a splitter walks the text from
    its start. Any other part is counted again.
    """

    def __init__(
        self,
        window: TokenWindow,
        text: str,
        starts: np.ndarray | None = None,
        before: np.ndarray | None = None,
    ) -> None:
        self.window, self.text = window, text
        self._starts, self._before = starts, before
        self.total = int(before[-1]) if before is not None else window.count(text)
        self._at = 0

    def spans(self, bounds: list[int]) -> list[int]:
        """Tokens of ``text[bounds[i]:bounds[i + 1]]`` for each ``i``, exact where the bounds are
        at whitespace (or the text's ends) and the window is additive."""
        if self._starts is None or self._before is None:  # a text counted, not yet placed
            self._starts, self._before = self.window._by_word(self.text)
        return np.diff(self._before[np.searchsorted(self._starts, bounds)]).tolist()

    def count(self, part: str) -> int:
        if self.window.additive:
            at = self.text.find(part, self._at)
            if at < 0:
                at = self.text.find(part)
            end = at + len(part)
            if at >= 0 and self.between_spaces(at, end):
                self._at = at
                return self.spans([at, end])[0]
        return self.window.count(part)

    def between_spaces(self, begin: int, end: int) -> bool:
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
        max_len = window_length(
            _read_json(model, "sentence_bert_config.json"),
            _read_json(model, "tokenizer_config.json"),
            _read_json(model, "config.json"),
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer of embedding model {model!r}: {exc}") from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    post = tokenizer.post_processor
    specials = post.num_special_tokens_to_add(False) if post is not None else 0
    additive = splits_at_whitespace_first(tokenizer)
    return TokenWindow(
        tokenizer=tokenizer, budget=int(max_len) - specials, additive=additive,
        _bert=BertWords.of(tokenizer) if additive else None,
    )  # fmt: skip


def _converted(model: str) -> Tokenizer:
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(model)
    if not getattr(slow, "is_fast", False):
        raise ValueError("it has no fast (Rust) tokenizer; dropvec needs one")
    return Tokenizer.from_str(slow.backend_tokenizer.to_str())
