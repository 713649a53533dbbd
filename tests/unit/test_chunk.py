"""Chunking: measured in the model's own tokens, never over the window, deterministic."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from dropvec.config.ids import chunk_id, doc_id_for
from dropvec.config.messages import MAX_CHUNK_CHARS, Chunk, embedded_text
from dropvec.config.settings import Settings
from dropvec.producer.chunk import Section, iter_chunks
from dropvec.producer.pack import tasks_of
from dropvec.producer.read import read_sections
from dropvec.producer.tokens import TokenWindow, load_window, splits_at_whitespace_first
from tests.corpus import SEED

ESSAY = SEED / "paul_graham_essay.txt"


@pytest.fixture(scope="module")
def window() -> TokenWindow:
    return load_window(Settings().embed_model_path)


def test_bundled_model_window_is_its_max_seq_length_less_special_tokens(window: TokenWindow) -> None:
    # all-MiniLM-L6-v2: max_seq_length 256, [CLS] and [SEP] added to every input
    assert window.budget == 254


def essay_chunks_with_name(window: TokenWindow, chunk_size: int) -> list[Chunk]:
    """The essay's chunks with its file name embedded in each."""
    return list(
        iter_chunks(
            [Section(ESSAY.read_text())],
            doc_id="d",
            file_metadata={"file_name": "essay.txt"},
            tokens=window,
            chunk_size=chunk_size,
            embed_keys=("file_name",),
        )
    )


@pytest.mark.parametrize("chunk_size", [0, 128, 10_000])
def test_no_chunk_exceeds_the_window_whatever_the_chunk_size(window: TokenWindow, chunk_size: int) -> None:
    chunks = essay_chunks_with_name(window, chunk_size)
    assert len(chunks) > 10
    assert max(window.count(embedded_text(c)) for c in chunks) <= window.budget
    assert all(c.text.strip() for c in chunks)


def test_embedded_metadata_is_counted_against_the_window(window: TokenWindow) -> None:
    chunks = essay_chunks_with_name(window, 0)
    assert chunks[0].embed_keys == ("file_name",)
    assert embedded_text(chunks[0]).startswith("file_name: essay.txt")
    # the fullest chunk uses the window, metadata included, and stays within it
    assert window.budget - 20 <= max(window.count(embedded_text(c)) for c in chunks) <= window.budget


def test_a_sections_title_and_heading_path_can_be_embedded_with_its_chunks(window: TokenWindow) -> None:
    text = ESSAY.read_text()[:6_000]
    sections = [Section(text, {"title": "Essay", "header_path": "/Essay/Before college/"}),
                Section(text, {"title": "Essay"})]  # fmt: skip
    chunks = list(iter_chunks(sections, doc_id="d", file_metadata={"file_name": "e.md"}, tokens=window,
                              chunk_size=128, embed_keys=("title", "header_path")))  # fmt: skip
    first = [c for c in chunks if "header_path" in c.metadata]
    assert first and embedded_text(first[0]).startswith("title: Essay\nheader_path: /Essay/Before college/")
    assert embedded_text(chunks[-1]).startswith("title: Essay\n\n")
    assert max(window.count(embedded_text(c)) for c in chunks) <= 128


def test_long_metadata_is_not_embedded_rather_than_shrinking_chunks(window: TokenWindow) -> None:
    # Given a file name that alone would take most of the window
    name = "very " * 150 + "long.txt"
    text = ESSAY.read_text()[:20_000]
    # When it is chunked with the file name asked for in the embedding
    chunks = list(
        iter_chunks(
            [Section(text)],
            doc_id="d",
            file_metadata={"file_name": name},
            tokens=window,
            chunk_size=0,
            embed_keys=("file_name",),
        )
    )
    # Then the name is kept as metadata but not embedded, and chunks keep their full size
    assert all(c.embed_keys == () for c in chunks)
    assert all(c.metadata["file_name"] == name for c in chunks)
    assert max(window.count(c.text) for c in chunks) > window.budget - 20


def test_a_text_with_no_sentence_boundaries_is_cut_to_fit(window: TokenWindow) -> None:
    text = "x" * 20_000 + " " + "y" * 5_000
    chunks = list(iter_chunks([Section(text)], doc_id="d", file_metadata={}, tokens=window))
    assert chunks
    assert max(window.count(embedded_text(c)) for c in chunks) <= window.budget


def test_chunk_ids_are_deterministic_and_depend_on_file_position_and_content(window: TokenWindow) -> None:
    text = ESSAY.read_text()[:10_000]
    a = list(iter_chunks([Section(text)], doc_id=doc_id_for("/a"), file_metadata={}, tokens=window))
    b = list(iter_chunks([Section(text)], doc_id=doc_id_for("/a"), file_metadata={}, tokens=window))
    c = list(iter_chunks([Section(text)], doc_id=doc_id_for("/b"), file_metadata={}, tokens=window))
    assert [x.id for x in a] == [x.id for x in b]
    assert not {x.id for x in a} & {x.id for x in c}
    assert len({x.id for x in a}) == len(a)
    assert chunk_id("d", 0, 0, "h1") != chunk_id("d", 0, 1, "h1") != chunk_id("d", 0, 1, "h2")


def test_each_version_of_a_file_has_its_own_chunk_ids(window: TokenWindow) -> None:
    text = ESSAY.read_text()[:5_000]
    v1 = list(iter_chunks([Section(text)], doc_id="d", file_metadata={}, tokens=window, generation=1))
    v2 = list(iter_chunks([Section(text)], doc_id="d", file_metadata={}, tokens=window, generation=2))
    assert [c.text for c in v1] == [c.text for c in v2]
    assert not {c.id for c in v1} & {c.id for c in v2}


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_editing_one_paragraph_changes_only_the_chunks_around_it(window: TokenWindow, where: float) -> None:
    # Given the essay, chunked at 128 tokens
    paragraphs = ESSAY.read_text().split("\n\n")
    before = {c.text for c in iter_chunks([Section("\n\n".join(paragraphs))], **essay_args(window))}
    # When one paragraph gets a word and a sentence more
    i = int(len(paragraphs) * where)
    paragraphs[i] = paragraphs[i].replace(" ", " really ", 1) + " One more sentence."
    after = [c.text for c in iter_chunks([Section("\n\n".join(paragraphs))], **essay_args(window))]
    # Then at most three chunks have text that was not there before (no cascade to the end)
    assert 1 <= sum(1 for t in after if t not in before) <= 3


def essay_args(window: TokenWindow) -> dict[str, object]:
    return {"doc_id": "d", "file_metadata": {}, "tokens": window, "chunk_size": 128, "chunk_overlap": 16}


def test_chunks_carry_position_hash_and_section_metadata(window: TokenWindow) -> None:
    sections = [
        Section("Page one text. " * 20, {"page_label": "1"}),
        Section("   "),
        Section("Two. " * 20, {"page_label": "2"}),
    ]
    chunks = list(iter_chunks(sections, doc_id="d", file_metadata={"file_path": "/f.pdf"}, tokens=window))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert {c.metadata["page_label"] for c in chunks} == {"1", "2"}
    assert all(
        len(str(c.metadata["content_hash"])) == 64 and c.metadata["file_path"] == "/f.pdf" for c in chunks
    )


def test_a_chunk_never_holds_more_characters_than_a_message_allows(window: TokenWindow) -> None:
    # a word of thousands of characters is one [UNK] token: the token limit alone does not cap it
    blob = "QUJD" * 10_000
    chunks = list(iter_chunks([Section(f"Before. {blob} After.")], **essay_args(window)))  # type: ignore[arg-type]
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in chunks)
    assert "".join(c.text for c in chunks).count("QUJD") == 10_000


def test_sections_joined_across_a_seam_chunk_like_one_section(window: TokenWindow) -> None:
    text = ESSAY.read_text()
    cut = text.index("\n\n", len(text) // 2) + 2
    whole = list(iter_chunks([Section(text)], **essay_args(window)))
    seamed = list(iter_chunks([Section(text[:cut]), Section(text[cut:], joined=True)], **essay_args(window)))
    assert [c.text for c in seamed] == [c.text for c in whole]


def test_an_additive_window_counts_parts_of_a_text_from_one_tokenization(window: TokenWindow) -> None:
    # the bundled model's WordPiece splits at whitespace first
    assert window.additive
    text = ESSAY.read_text()[:20_000]
    measured = window.measure(text)
    assert measured.total == window.count(text)
    words = text.split(" ")
    rng = random.Random(0)
    for _ in range(300):
        i = rng.randrange(len(words))
        part = " ".join(words[i : rng.randrange(i, min(len(words), i + 80)) + 1])
        assert measured.count(part) == window.count(part), part
    # a part cut inside a word is tokenized again: "painting" is one token, "ainting" is not none
    assert "painting" in text
    assert measured.count("ainting") == window.count("ainting") > 0


def test_counting_parts_from_one_tokenization_leaves_every_chunk_as_it_was(window: TokenWindow) -> None:
    # Given the essay and the first pages of a 10-K (one long paragraph a page)
    pages = list(itertools.islice(read_sections(SEED / "uber_2021.pdf"), 30))
    recount = dataclasses.replace(window, additive=False)  # every part tokenized on its own
    for sections, args in [
        ([Section(ESSAY.read_text())], {"chunk_size": 128}),
        (pages, {"chunk_size": 128}),
        (pages, {"chunk_size": 0, "embed_keys": ("file_name",)}),
    ]:
        common = {"doc_id": "d", "file_metadata": {"file_name": "f.pdf"}, **args}
        # When they are chunked with counts from one tokenization, and with every part recounted
        fast = list(iter_chunks(sections, tokens=window, **common))  # type: ignore[arg-type]
        slow = list(iter_chunks(sections, tokens=recount, **common))  # type: ignore[arg-type]
        # Then the chunks are the same
        assert len(fast) > 20
        assert [(c.id, c.text) for c in fast] == [(c.id, c.text) for c in slow]


def test_only_tokenizers_that_split_at_whitespace_first_count_parts_as_additive() -> None:
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    assert not splits_at_whitespace_first(tokenizer)
    for pre, additive in [
        (pre_tokenizers.BertPreTokenizer(), True),
        (pre_tokenizers.WhitespaceSplit(), True),
        (pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()]), True),
        (pre_tokenizers.ByteLevel(), False),  # GPT-2 style: a space belongs to the next word
        (pre_tokenizers.Metaspace(), False),
        (pre_tokenizers.Sequence([pre_tokenizers.Digits(), pre_tokenizers.WhitespaceSplit()]), False),
    ]:
        tokenizer.pre_tokenizer = pre
        assert splits_at_whitespace_first(tokenizer) is additive, pre


MIXED = (
    "Ünïcödé accents, CJK 漢字かな, numbers 3.14159 and -0.0436823, "
    "control\x0bchars\x00here, a\u00a0no-break space, e-mail a.b@c.org, URL https://x.y/z?q=1#f, "
    "emoji 🙂 and a longwordwithoutanyspaceswhatsoeverthatgoesonandonforeverandeverandever."
)


@pytest.mark.parametrize("cache_words", [200_000, 3])
def test_word_by_word_counts_are_the_tokenizers_own(
    window: TokenWindow, cache_words: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given texts of every kind of word, counted with a cache large and one that keeps restarting
    import dropvec.producer.tokens as tokens

    monkeypatch.setattr(tokens, "CACHE_WORDS", cache_words)
    fresh = dataclasses.replace(window, _words={})
    rng = random.Random(1)
    words = (MIXED + " " + ESSAY.read_text()[:5_000]).split(" ")
    for _ in range(200):
        lines = (" ".join(rng.sample(words, rng.randrange(1, 60))) for _ in range(rng.randrange(1, 4)))
        text = "\n".join(lines)
        # Then each count is what the tokenizer says for the whole text
        assert fresh.count(text) == len(window.tokenizer.encode(text, add_special_tokens=False).ids), text


def test_words_are_counted_as_the_whole_pipeline_counts_them(window: TokenWindow) -> None:
    # Given words of every shape: numbers, identifiers, URLs, punctuation runs, special tokens'
    # texts in any case, words longer than WordPiece's 100 characters, and words of any script,
    # with accents (composed and combining), CJK, emoji, control and zero-width characters and
    # whitespace that is not a space (which the pipeline cuts at)
    from dropvec.producer.tokens import BertWords

    assert window._bert is not None
    rng = random.Random(5)
    ascii_chars = [chr(c) for c in range(33, 127)]
    other = [chr(c) for c in [*range(0xA0, 0x250), *range(0x300, 0x370), *range(0x370, 0x530),
                              *range(0x600, 0x700), *range(0xE00, 0xE80), *range(0x2000, 0x2070),
                              *range(0x3000, 0x3100), *range(0x4E00, 0x4F00), *range(0xAC00, 0xAD00),
                              *range(0x1F600, 0x1F650), *range(0, 32), 0x7F, 0xFEFF, 0xFFFD]]  # fmt: skip
    words = ["[CLS]", "x[SEP]y", "[mask]", "[Pad]!", "a" * 101, "A" * 99 + ",", "3.14159,", "-0.0436823",
             "https://x.y/z?q=1#f", "e-mail:a.b@c.org", "Ünïcödé", "漢字", "tab\x0bbed", "(word)", "WORD.",
             "§12.", "e\u0301te\u0301", "\u0301", "\x00", "né\u00a0à", "中[CLS]文", "é" * 101]  # fmt: skip
    words += ["".join(rng.choices(ascii_chars, k=rng.randint(1, 30))) for _ in range(3_000)]
    words += ["".join(rng.choices(ascii_chars + other, k=rng.randint(1, 20))) for _ in range(3_000)]
    words += [f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 12)}f}" for _ in range(1_000)]
    words += rng.sample(ESSAY.read_text().split(), 1_000)
    words = [w for w in words if w and not any(c in w for c in " \t\n\r")]  # (words: cut at these)
    # When they are counted without the whole pipeline (those it leaves are the pipeline's)
    known: dict[str, int] = {}
    left = BertWords.of(window.tokenizer).count(words, known)  # type: ignore[union-attr]
    # Then every count is the pipeline's, and only words with a special token's text are left
    for word, n in known.items():
        assert n == len(window.tokenizer.encode(word, add_special_tokens=False).ids), repr(word)
    assert set(left) == {"[CLS]", "x[SEP]y", "[mask]", "[Pad]!", "中[CLS]文"}
    assert len(known) > 7_000


def test_only_berts_pipeline_is_counted_without_it() -> None:
    from dropvec.producer.tokens import BertWords

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert BertWords.of(tokenizer) is None


def test_a_long_paragraph_is_cut_at_sentences_within_the_size_and_loses_no_word(window: TokenWindow) -> None:
    # Given a paragraph of some 3,000 tokens: sentences, one huge "word", and lines
    from dropvec.producer.chunk import SplitParagraph

    essay = " ".join(ESSAY.read_text().split())[:12_000]
    paragraph = essay + " " + "x" * 3_000 + "\nrow, 1, 2\nrow, 3, 4"
    size, overlap = 100, 16
    # When it is split
    pieces = SplitParagraph(size, overlap)(window.measure(paragraph))
    # Then every piece fits, with its count exact, and most end at a sentence's end
    assert all(n == window.count(p) <= size for p, n in pieces)
    assert sum(p.endswith((".", "?", "!", '"')) for p, _ in pieces) > len(pieces) // 2
    # and the pieces, less what each repeats of the one before, are the paragraph's words
    words = paragraph.split()
    assert " ".join(pieces[0][0].split()) == " ".join(words[: len(pieces[0][0].split())])
    seen = [w for p, _ in pieces for w in p.split()]
    assert set(words) <= set(seen) and len(words) <= len(seen) <= len(words) + len(pieces) * overlap


def test_window_length_rule() -> None:
    from dropvec.config.models import window_length

    st, tok, model = {"max_seq_length": 256}, {"model_max_length": 512}, {"max_position_embeddings": 514}
    assert window_length(st, tok, model) == 256  # what sentence-transformers sets comes first
    assert window_length({}, tok, model) == 512  # else the lower of the two limits
    assert window_length({}, {"model_max_length": int(1e30)}, model) == 514  # "no limit" is none
    assert window_length({}, {}, {}) == 512


def test_the_file_that_ends_a_pass_ends_in_quarter_tasks_its_first_leaving_at_once() -> None:
    def sizes(n: int, *, taper: bool = True) -> list[int]:
        tasks = list(tasks_of(range(n), 128, taper=taper))
        assert [c for t in tasks for c in t] == list(range(n))  # (every chunk once, in order)
        return [len(t) for t in tasks]

    assert sizes(300, taper=False) == [128, 128, 44]
    assert sizes(300) == [128, 32, 32, 32, 32, 32, 12]
    assert sizes(1000) == [128] * 6 + [32] * 7 + [8]  # (up to the last 256 chunks in quarters)
    assert sizes(100) == [100] and sizes(128) == [128] and sizes(0) == []  # (one task: may be packed)
    read = itertools.count()
    first = next(tasks_of((next(read) for _ in range(1000)), 128, taper=True))
    assert len(first) == 128 and next(read) == 128  # (sent once read, before the rest)


def test_the_file_that_starts_a_pass_starts_in_quarter_tasks_each_leaving_once_read() -> None:
    def sizes(n: int, *, taper: bool = False) -> list[int]:
        tasks = list(tasks_of(range(n), 128, taper=taper, hurry=128))
        assert [c for t in tasks for c in t] == list(range(n))
        return [len(t) for t in tasks]

    assert sizes(300) == [32, 32, 32, 32, 128, 44]
    assert sizes(100) == [32, 32, 32, 4] and sizes(0) == []
    assert sizes(600, taper=True) == [32] * 4 + [128, 128] + [32] * 6 + [24]
    assert [len(t) for t in tasks_of(range(300), 128, hurry=40)] == [32, 8, 128, 128, 4]
    read = itertools.count()
    first = next(tasks_of((next(read) for _ in range(1000)), 128, hurry=128))
    assert len(first) == 32 and next(read) == 32
