"""Reading speed per file type, and OCR pages/s: one process, one core, the producer's own
``read_sections`` and chunking.

    .venv/bin/python -m bench.formats [--scale 1] [--ocr-pages 6] [--json]

Files are made here with the libraries that write each type (python-pptx, openpyxl, EbookLib,
the standard library), filled with the essay's paragraphs so that the text is real prose; source
code is Python's own standard library. Reported per type: MB of file, seconds, MB/s, chunks and
chunks/s. OCR: pages drawn as a scan (black text on white, 300 dpi A4) in an image-only PDF,
read by Tesseract: pages/s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import shutil
import sysconfig
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ESSAY = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "seed" / "paul_graham_essay.txt"


def paragraphs() -> list[str]:
    return [p.strip() for p in ESSAY.read_text().split("\n\n") if p.strip()]


def make(folder: Path, scale: int) -> dict[str, Path]:
    from ebooklib import epub
    from openpyxl import Workbook
    from pptx import Presentation

    text = paragraphs() * scale
    made: dict[str, Path] = {}
    deck = Presentation()
    for n, p in enumerate(text):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide {n}"
        slide.placeholders[1].text = p
    made["pptx"] = folder / "deck.pptx"
    deck.save(str(made["pptx"]))
    book = Workbook()
    sheet = book.active
    sheet.append(["id", "year", "paragraph"])
    for n, p in enumerate(text * 4):
        sheet.append([n, 1990 + n % 30, p])
    made["xlsx"] = folder / "book.xlsx"
    book.save(made["xlsx"])
    ebook = epub.EpubBook()
    ebook.set_identifier("bench")
    ebook.set_title("Bench")
    chapters = []
    for n in range(0, len(text), 10):
        chapter = epub.EpubHtml(title=f"Chapter {n}", file_name=f"c{n}.xhtml")
        chapter.content = f"<h1>Chapter {n}</h1>" + "".join(f"<p>{escape(p)}</p>" for p in text[n : n + 10])
        ebook.add_item(chapter)
        chapters.append(chapter)
    ebook.toc, ebook.spine = chapters, chapters
    ebook.add_item(epub.EpubNcx())
    made["epub"] = folder / "book.epub"
    epub.write_epub(str(made["epub"]), ebook)
    made["mbox"] = folder / "mail.mbox"
    box = mailbox.mbox(str(made["mbox"]))
    for n, p in enumerate(text):
        mail = EmailMessage()
        mail["Subject"], mail["From"] = f"Message {n}", "a@example.org"
        mail.set_content(p)
        box.add(mail)
    box.close()
    made["ipynb"] = folder / "notes.ipynb"
    cells = [{"cell_type": "markdown" if n % 2 else "code", "metadata": {}, "source": p, "outputs": []}
             for n, p in enumerate(text)]  # fmt: skip
    made["ipynb"].write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    made["json"] = folder / "data.json"
    made["json"].write_text(json.dumps({"items": [{"id": n, "text": p} for n, p in enumerate(text * 4)]}))
    made["yaml"] = folder / "data.yaml"
    import yaml

    made["yaml"].write_text(yaml.safe_dump({"items": [{"id": n, "text": p} for n, p in enumerate(text * 2)]}))
    made["xml"] = folder / "data.xml"
    made["xml"].write_text("<items>" + "".join(f'<item id="{n}"><text>{escape(p)}</text></item>'
                                               for n, p in enumerate(text * 4)) + "</items>")  # fmt: skip
    code = folder / "code"
    code.mkdir()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("argparse.py", "textwrap.py", "dataclasses.py", "pathlib.py", "inspect.py", "typing.py"):
        shutil.copy(stdlib / name, code / name)
    made["py"] = code
    made["html"] = folder / "page.html"
    parts = "".join(f"<h2>Part {n}</h2><p>{escape(p)}</p>" for n, p in enumerate(text * 4))
    made["html"].write_text(f"<html><body>{parts}</body></html>")
    return made


def scan_pdf(path: Path, pages: int) -> None:
    from PIL import Image, ImageDraw, ImageFont

    text = " ".join(paragraphs())
    font = ImageFont.load_default(size=36)
    images = []
    for n in range(pages):
        page = Image.new("L", (2480, 3508), 255)  # A4 at 300 dpi
        draw = ImageDraw.Draw(page)
        words = text[n * 2500 : (n + 1) * 2500].split()
        lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
        for i, line in enumerate(lines[:60]):
            draw.text((150, 150 + 52 * i), line, fill=0, font=font)
        images.append(page.convert("RGB"))
    images[0].save(path, format="PDF", resolution=300, save_all=True, append_images=images[1:])


def read(settings: Any, path: Path) -> tuple[float, int]:
    from dropvec.config.ids import doc_id_for
    from dropvec.producer.chunk import iter_chunks
    from dropvec.producer.read import read_sections
    from dropvec.producer.tokens import load_window

    window = load_window(settings.embed_model_path)
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    began, chunks = time.perf_counter(), 0
    for f in files:
        chunks += sum(1 for _ in iter_chunks(read_sections(f), doc_id=doc_id_for(str(f)), file_metadata={},
                                             tokens=window, chunk_size=settings.chunk_size,
                                             chunk_overlap=settings.chunk_overlap))  # fmt: skip
    return time.perf_counter() - began, chunks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1, help="copies of the essay's paragraphs per file")
    parser.add_argument("--ocr-pages", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from dropvec.config.settings import Settings
    from dropvec.producer.formats import tesseract_version
    from dropvec.producer.tokens import load_window

    settings = Settings(_env_file=None)
    load_window(settings.embed_model_path)
    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-formats-"))
    rows = []
    try:
        for kind, path in make(root, args.scale).items():
            size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*")))
            seconds, chunks = read(settings, path)
            mb = size / 2**20
            rows.append({"type": kind, "mb": mb, "seconds": seconds, "mb_per_s": mb / seconds,
                         "chunks": chunks, "chunks_per_s": chunks / seconds})  # fmt: skip
        if args.ocr_pages and tesseract_version():
            scan = root / "scan.pdf"
            scan_pdf(scan, args.ocr_pages)
            seconds, chunks = read(settings, scan)
            pages = args.ocr_pages
            rows.append({"type": f"OCR (Tesseract {tesseract_version()}), A4 300 dpi", "pages": pages,
                         "seconds": seconds, "pages_per_s": pages / seconds, "chunks": chunks})  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        if args.json:
            print(json.dumps(row))
        elif "pages" in row:
            print(f"{row['type']:44} {row['pages']:4d} pages {row['seconds']:7.1f} s"
                  f" {row['pages_per_s']:6.2f} pages/s {row['chunks']:6d} chunks")  # fmt: skip
        else:
            print(f"{row['type']:8} {row['mb']:7.2f} MB {row['seconds']:6.2f} s {row['mb_per_s']:6.2f} MB/s"
                  f" {row['chunks']:6d} chunks {row['chunks_per_s']:8.0f} chunks/s")  # fmt: skip


if __name__ == "__main__":
    main()
