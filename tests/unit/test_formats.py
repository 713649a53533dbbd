"""Every reader beyond text: real files written by their own libraries, read back with the
sentences they hold and the metadata that says where; a hostile file of each type refused with a
one-line reason. OCR runs the real Tesseract (scripts/test.sh installs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropvec.config.errors import InputFileError, SkippedFile
from dropvec.producer.formats import Ocr, tesseract_version
from dropvec.producer.read import is_supported, read_sections, real_type
from tests import formats


def holder(path: Path, sentence: str) -> dict[str, object]:
    """The metadata of the section of ``path`` that holds ``sentence``."""
    sections = list(read_sections(path))
    found = [s for s in sections if sentence in " ".join(s.text.split())]
    assert found, (path.name, sentence, [s.text[:200] for s in sections])
    return dict(found[0].metadata)


def test_every_type_is_read_with_its_sentences_and_where_they_are(tmp_path: Path) -> None:
    for sample in formats.every_type(tmp_path):
        meta = holder(tmp_path / sample.name, sample.sentence)
        assert sample.metadata.items() <= meta.items(), (sample, meta)


def test_outputs_of_a_notebook_are_not_read(tmp_path: Path) -> None:
    formats.ipynb(tmp_path / "n.ipynb")
    assert all("BLOB" not in s.text for s in read_sections(tmp_path / "n.ipynb"))


def test_a_file_is_read_as_its_content_where_its_extension_lies(tmp_path: Path) -> None:
    formats.xlsx(tmp_path / "book.xlsx")
    (tmp_path / "book.xlsx").rename(tmp_path / "book.txt")
    formats.scans(tmp_path)
    (tmp_path / "scan.pdf").rename(tmp_path / "scan")  # (no extension at all)
    assert real_type(tmp_path / "book.txt") == ".xlsx" and real_type(tmp_path / "scan") == ".pdf"
    assert is_supported(tmp_path / "scan")
    assert holder(tmp_path / "book.txt", "Cost: 275")["sheet"] == "Budget"
    (tmp_path / "archive.md").write_bytes(
        (tmp_path / "book.txt").read_bytes()[:0] + b"PK\x03\x04" + bytes(64)
    )
    with pytest.raises(SkippedFile, match="unsupported file type .md"):
        read_sections(tmp_path / "archive.md")


def test_hostile_files_of_each_type_fail_or_skip_with_a_reason(tmp_path: Path) -> None:
    expected = formats.hostile(tmp_path)
    for name, (status, reason) in expected.items():
        try:
            sections = list(read_sections(tmp_path / name))
        except InputFileError as exc:
            got = "skipped" if isinstance(exc, SkippedFile) else "failed"
            assert (got, reason in exc.reason, "\n" in exc.reason) == (status, True, False), (
                name,
                exc.reason,
            )
            continue
        assert status == "indexed" and sections, name
    body = list(read_sections(tmp_path / "big.eml"))
    assert len(body) == 1 and "with a 50 MB attachment" in body[0].text


def test_tesseract_is_installed_for_the_ocr_tests() -> None:
    assert tesseract_version(), (
        "scripts/test.sh installs tesseract-ocr; run it, or apt-get install tesseract-ocr"
    )


def test_scans_and_images_are_read_by_ocr_and_not_when_it_is_off(tmp_path: Path) -> None:
    samples = formats.scans(tmp_path)
    for sample in samples:
        meta = holder(tmp_path / sample.name, sample.sentence)
        assert sample.metadata.items() <= meta.items(), (sample, meta)
    off = Ocr(enabled=False)
    with pytest.raises(SkippedFile, match="OCR is off"):
        read_sections(tmp_path / "scan.png", off)
    with pytest.raises(SkippedFile, match=r"no text layer \(a scan\?\): OCR is off"):
        list(read_sections(tmp_path / "scan.pdf", off))


def test_ocr_reads_at_most_its_page_cap(tmp_path: Path) -> None:
    pages = [formats.drawn_page([f"Page number {n} of the report"]) for n in range(1, 4)]
    pages[0].save(tmp_path / "three.pdf", format="PDF", save_all=True, append_images=pages[1:])  # type: ignore[attr-defined]
    sections = list(read_sections(tmp_path / "three.pdf", Ocr(max_pages=2)))
    assert [bool(s.text.strip()) for s in sections] == [True, True, False]
    assert "Page number 2" in sections[1].text


def test_a_blank_page_is_not_read_by_ocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from dropvec.producer import read

    read_by_ocr: list[object] = []
    ocr_image = read.ocr_image
    monkeypatch.setattr(
        read, "ocr_image", lambda image, ocr: read_by_ocr.append(image) or ocr_image(image, ocr)
    )
    text, white = formats.drawn_page(["Page number 1 of the report"]), Image.new("RGB", (1700, 700), "white")
    text.save(tmp_path / "mixed.pdf", format="PDF", save_all=True, append_images=[white])  # type: ignore[attr-defined]
    sections = list(read_sections(tmp_path / "mixed.pdf", Ocr()))
    assert "Page number 1" in sections[0].text and sections[1].text == ""
    assert len(read_by_ocr) == 1
    white.save(tmp_path / "blank.pdf", format="PDF", save_all=True, append_images=[white])
    with pytest.raises(SkippedFile, match=r"no text \(its pages are blank\)"):
        list(read_sections(tmp_path / "blank.pdf", Ocr()))
    assert len(read_by_ocr) == 1


def test_a_page_with_nothing_on_it_is_blank_without_being_rendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdfium2

    from dropvec.producer import read

    pdf = pypdfium2.PdfDocument.new()
    for _ in range(2):
        pdf.new_page(612, 792)  # (no page object, no annotation)
    pdf.save(str(tmp_path / "empty.pdf"))
    pdf.close()
    rendered: list[object] = []
    monkeypatch.setattr(read, "blank_page", lambda image: rendered.append(image) or True)
    with pytest.raises(SkippedFile, match=r"no text \(its pages are blank\)"):
        list(read_sections(tmp_path / "empty.pdf", Ocr()))
    assert not rendered


def test_blank_pages_count_towards_the_ocr_page_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from dropvec.producer import read

    rendered: list[object] = []
    blank = read.blank_page
    monkeypatch.setattr(read, "blank_page", lambda image: rendered.append(image) or blank(image))
    white = Image.new("RGB", (1700, 700), "white")
    white.save(tmp_path / "blank.pdf", format="PDF", save_all=True, append_images=[white] * 4)
    with pytest.raises(SkippedFile, match=r"2 page\(s\) blank, 3 past the OCR page cap"):
        list(read_sections(tmp_path / "blank.pdf", Ocr(max_pages=2)))
    assert len(rendered) == 2


def test_a_page_is_blank_only_if_one_colour_all_over() -> None:
    from PIL import Image, ImageDraw

    from dropvec.producer.read import blank_page

    assert blank_page(Image.new("RGB", (300, 200), "white")) and blank_page(Image.new("L", (300, 200), 80))
    red_on_grey = Image.new("RGB", (300, 200), (76, 76, 76))  # (the same brightness as pure red)
    ImageDraw.Draw(red_on_grey).rectangle((50, 50, 120, 90), fill=(255, 0, 0))
    assert red_on_grey.convert("L").getextrema() == (76, 76)
    assert not blank_page(red_on_grey)
