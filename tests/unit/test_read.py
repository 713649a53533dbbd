"""Reading: supported types through llama-index readers, one clear reason for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropvec.errors import SkippedFile, UnreadableFile
from producer.read import read_sections
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
