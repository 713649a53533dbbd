"""Reading: supported types through the producer's readers, one clear reason for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropvec.config.errors import SkippedFile, UnreadableFile
from dropvec.producer.read import read_sections
from tests.corpus import PUBLIC


def test_plain_text_in_several_encodings(tmp_path: Path) -> None:
    text = "Café déjà vu — naïve façade. " * 20
    for name, data in {
        "u8.txt": text.encode("utf-8"),
        "bom.txt": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "u16.txt": text.encode("utf-16"),
        "latin1.txt": text.replace("—", "-").encode("latin-1"),
    }.items():
        (tmp_path / name).write_bytes(data)
        [section] = list(read_sections(tmp_path / name))
        assert "déjà vu" in section.text, name


def test_unsupported_type_is_skipped_with_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "photo.xyz"
    path.write_bytes(b"\x00\x01")
    with pytest.raises(SkippedFile, match=r"unsupported file type \.xyz"):
        read_sections(path)


def test_binary_data_with_a_text_extension_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UnreadableFile, match="binary"):
        read_sections(path)


def test_a_corrupt_pdf_fails_with_a_one_line_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n garbage \x00\x01\x02")
    with pytest.raises(UnreadableFile) as info:
        read_sections(path)
    assert "\n" not in info.value.reason and str(path) in str(info.value)


def test_docx_csv_markdown_and_html_are_read(tmp_path: Path) -> None:
    html = tmp_path / "page.html"
    html.write_text("<html><head><title>t</title></head><body><p>Hello from HTML body.</p></body></html>")
    assert "Hello from HTML body." in next(read_sections(html)).text
    docx = next((PUBLIC / "docx").rglob("single-paragraph.docx"))
    assert next(read_sections(docx)).text.strip()
    csv = PUBLIC / "csv" / "seaborn-data" / "iris.csv"
    assert "setosa" in next(read_sections(csv)).text
    md = next((PUBLIC / "md").rglob("*.md"))
    assert any(s.text.strip() for s in read_sections(md))


def test_markdown_and_html_in_any_encoding_keep_their_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.htm"
    head = '<meta charset="windows-1252"><title>Café</title>'
    page.write_bytes(f"{head}<h1>Déjà vu</h1><p>Naïve façade.</p>".encode("cp1252"))
    [section] = read_sections(page)
    assert section.text == "Déjà vu\n\nNaïve façade."
    assert section.metadata == {"title": "Café", "header_path": "/Déjà vu/"}
    notes = tmp_path / "notes.markdown"
    notes.write_bytes("# Über\n\nGrüße aus Köln.\n".encode("utf-16"))
    [section] = read_sections(notes)
    assert section.metadata["header_path"] == "/Über/" and "Grüße" in section.text
    lying = tmp_path / "lying.html"  # (declares UTF-8, is Latin-1: read as undeclared text is)
    lying.write_bytes(('<meta charset="utf-8"><p>' + "Déjà vu, naïve façade. " * 20).encode("latin-1"))
    assert "vu, na" in next(read_sections(lying)).text
    binary = tmp_path / "binary.md"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UnreadableFile, match="binary"):
        read_sections(binary)


def test_a_large_text_file_is_read_in_blocks_that_chunk_like_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropvec.config.settings import Settings
    from dropvec.producer import read
    from dropvec.producer.chunk import Section, iter_chunks
    from dropvec.producer.tokens import load_window
    from tests.corpus import SEED

    text = (SEED / "paul_graham_essay.txt").read_text()
    for name, encoding in {"u8.txt": "utf-8", "u16.txt": "utf-16"}.items():
        (tmp_path / name).write_bytes(text.encode(encoding))
    monkeypatch.setattr(read, "STREAM_BLOCK_BYTES", 4096)
    args = {"doc_id": "d", "file_metadata": {}, "tokens": load_window(Settings().embed_model_path)}
    for name in ("u8.txt", "u16.txt"):
        sections = list(read_sections(tmp_path / name))
        assert len(sections) > 10 and all(s.joined for s in sections[1:]), name
        whole = Section(read.decode_text((tmp_path / name).read_bytes(), tmp_path / name))
        streamed = [c.text for c in iter_chunks(sections, **args)]  # type: ignore[arg-type]
        assert streamed == [c.text for c in iter_chunks([whole], **args)], name  # type: ignore[arg-type]


def test_text_without_paragraph_breaks_is_cut_into_bounded_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropvec.producer import read

    monkeypatch.setattr(read, "STREAM_BLOCK_BYTES", 4096)
    monkeypatch.setattr(read, "MAX_PARAGRAPH_CHARS", 1000)
    path = tmp_path / "oneline.txt"
    path.write_text("word " * 20_000)
    sections = list(read_sections(path))
    assert "".join(s.text for s in sections) == "word " * 20_000
    assert max(len(s.text) for s in sections) <= 4096 + 1000


def test_pdf_hyphens_that_pdfium_marks_are_read_as_hyphens() -> None:
    from tests.corpus import SEED

    text = " ".join(s.text for s in read_sections(SEED / "uber_2021.pdf"))
    assert "\x02" not in text and "front-of-house" in text and "self-driving" in text


def test_a_pdfs_pages_are_read_as_its_sections_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    from dropvec.producer import read
    from tests.corpus import SEED

    extracted = []
    monkeypatch.setattr(read, "_pdf_text", lambda text: extracted.append(text) or text)
    pages = read_sections(SEED / "uber_2021.pdf")
    assert extracted == []  # (opened only)
    first = next(pages)
    assert len(extracted) == 1 and first.metadata["page_label"] == "1"
    assert sum(1 for _ in pages) > 100 and len(extracted) > 100


def test_a_pdf_page_that_cannot_be_read_fails_the_file_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dropvec.producer import read
    from tests.corpus import SEED

    pages_read: list[str] = []

    def third_page_fails(text: str) -> str:
        pages_read.append(text)
        if len(pages_read) == 3:
            raise RuntimeError("bad\ncontent stream")
        return text

    monkeypatch.setattr(read, "_pdf_text", third_page_fails)
    pages = read_sections(SEED / "uber_2021.pdf")
    assert len([next(pages), next(pages)]) == 2
    with pytest.raises(UnreadableFile, match=r"cannot read pdf: RuntimeError: bad content stream$"):
        next(pages)
