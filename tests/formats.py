"""Real files of every type dropvec reads beyond plain text, made with the libraries that write
them (python-pptx, openpyxl, EbookLib, the standard library's email and mailbox, Pillow), each
holding known sentences; and a hostile file of each type."""

from __future__ import annotations

import io
import json
import mailbox
import random
import zipfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """A file's name, a sentence it holds, and metadata the chunk holding it must carry."""

    name: str
    sentence: str
    metadata: dict[str, object] = field(default_factory=dict)


def pptx(path: Path) -> list[Sample]:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for title, body, notes in [
        ("Puffins at home", "Puffins dig their burrows into the soft turf of the cliff top.", ""),
        ("Feeding", "Sand eels are what the chicks are fed in June.",
         "Speaker notes: mention the Skomer island count of 2019."),
    ]:  # fmt: skip
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    table = deck.slides.add_slide(deck.slide_layouts[5])
    table.shapes.title.text = "Counts"
    grid = table.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for (r, c), text in {(0, 0): "Colony", (0, 1): "Puffins", (1, 0): "Big Sur", (1, 1): "3141"}.items():
        grid.cell(r, c).text = text
    deck.save(str(path))
    return [
        Sample(path.name, "Puffins dig their burrows into the soft turf of the cliff top.",
               {"slide": 1, "title": "Puffins at home"}),
        Sample(path.name, "mention the Skomer island count of 2019", {"slide": 2}),
        Sample(path.name, "Big Sur | 3141", {"slide": 3}),
    ]  # fmt: skip


def xlsx(path: Path) -> list[Sample]:
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    first.title = "Sightings"
    first.append(["Date", "Place", "Note"])
    first.append(["2024-05-01", "Skomer North", "A raft of forty puffins rested below the stack."])
    second = book.create_sheet("Budget")
    second.append(["Item", "Cost"])
    second.append(["Boat charter for the count", 275])
    book.save(path)
    return [
        Sample(path.name, "Place: Skomer North; Note: A raft of forty puffins rested below the stack.",
               {"sheet": "Sightings"}),
        Sample(path.name, "Item: Boat charter for the count; Cost: 275", {"sheet": "Budget"}),
    ]  # fmt: skip


def epub(path: Path) -> list[Sample]:
    from ebooklib import epub as ebook

    book = ebook.EpubBook()
    book.set_identifier("puffins-1")
    book.set_title("A Book of Puffins")
    book.set_language("en")
    chapters = []
    for n, (title, text) in enumerate([
        ("The Bill", "A puffin can hold a dozen fish crosswise in its bill."),
        ("The Young", "Young puffins are called pufflings and leave the burrow at night."),
    ], 1):  # fmt: skip
        chapter = ebook.EpubHtml(title=title, file_name=f"chap_{n}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(ebook.EpubNcx())
    book.add_item(ebook.EpubNav())
    book.spine = ["nav", *chapters]
    ebook.write_epub(str(path), book)
    return [
        Sample(path.name, "A puffin can hold a dozen fish crosswise in its bill.",
               {"chapter": "The Bill", "title": "A Book of Puffins"}),
        Sample(path.name, "Young puffins are called pufflings and leave the burrow at night.",
               {"chapter": "The Young"}),
    ]  # fmt: skip


def message(subject: str, body: str, attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = subject, "Ada <ada@example.org>", "team@example.org"
    mail["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    mail.set_content(body)
    if attachment:
        mail.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return mail


def eml(path: Path) -> list[Sample]:
    notes = b"The attached notes say the puffling weighed 310 grams."
    mail = message(
        "Puffling report", "The puffling Juniper left the burrow on Monday night.", ("notes.txt", notes)
    )
    path.write_bytes(bytes(mail))
    return [
        Sample(path.name, "The puffling Juniper left the burrow on Monday night.",
               {"subject": "Puffling report"}),
        Sample(path.name, "the puffling weighed 310 grams",
               {"subject": "Puffling report", "attachment": "notes.txt"}),
    ]  # fmt: skip


def mbox(path: Path) -> list[Sample]:
    box = mailbox.mbox(str(path))
    box.add(message("Ferry times", "The Friday ferry leaves Martin's Haven at 10:15."))
    box.add(message("Hide booking", "The bird hide is booked for the ninth of June."))
    box.flush()
    box.close()
    return [
        Sample(path.name, "The Friday ferry leaves Martin's Haven at 10:15.", {"subject": "Ferry times"}),
        Sample(path.name, "The bird hide is booked for the ninth of June.", {"subject": "Hide booking"}),
    ]


def ipynb(path: Path) -> list[Sample]:
    notebook = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [
            {"cell_type": "markdown", "metadata": {},
             "source": ["# Counting puffins\n", "\n", "We count puffins from the cliff at dawn.\n"]},
            {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "puffin_total = 17 + 25\n",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "BLOB" * 1000}]},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(notebook))
    return [
        Sample(path.name, "We count puffins from the cliff at dawn.",
               {"cell": 1, "header_path": "/Counting puffins/"}),
        Sample(path.name, "puffin_total = 17 + 25", {"cell": 2}),
    ]  # fmt: skip


def data_files(folder: Path) -> list[Sample]:
    site = {"id": "ES-4", "note": "Pups seen near the railway bridge."}
    (folder / "colony.json").write_text(json.dumps({"colony": {"name": "Elkhorn Slough", "sites": [site]}}))
    (folder / "count.yaml").write_text("count:\n  leader: Maria\n  boats:\n    - name: Shearwater\n"
                                        "      note: The Shearwater carries the ringing kit.\n")  # fmt: skip
    (folder / "feed.xml").write_text('<?xml version="1.0"?><feed><entry id="7"><title>Puffin cam</title>'
                                     "<summary>The puffin cam streams from the burrow at night.</summary>"
                                     "</entry></feed>")  # fmt: skip
    return [
        Sample("colony.json", "colony.sites[0].note: Pups seen near the railway bridge."),
        Sample("count.yaml", "count.boats[0].note: The Shearwater carries the ringing kit."),
        Sample("feed.xml", "feed/entry/summary: The puffin cam streams from the burrow at night."),
    ]


def code_files(folder: Path) -> list[Sample]:
    (folder / "census.py").write_text(
        'import math\n\n\ndef puffin_density(count, area):\n    """Puffins per hectare of cliff top."""\n'
        "    return count / area\n\n\nclass Census:\n    def total(self):\n        return 42\n"
    )
    (folder / "tide.js").write_text(
        "// Tide helper\nfunction nextLowTide(table) {\n  return table.lows[0];\n}\n"
    )
    (folder / "puffins.sql").write_text("SELECT colony, COUNT(*) FROM sightings GROUP BY colony;\n")
    return [
        Sample("census.py", '"""Puffins per hectare of cliff top."""', {"symbol": "puffin_density"}),
        Sample("tide.js", "function nextLowTide(table)"),
        Sample("puffins.sql", "SELECT colony, COUNT(*) FROM sightings GROUP BY colony;"),
    ]


def documents(folder: Path) -> list[Sample]:
    (folder / "letter.rtf").write_text(r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard "
                                       r"The volunteers meet at the harbour at seven.\par}")  # fmt: skip
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        '<text:h text:outline-level="1">Field guide</text:h>'
        "<text:p>Puffins oil their feathers each day to keep them waterproof.</text:p>"
        "</office:text></office:body></office:document-content>"
    )
    with zipfile.ZipFile(folder / "guide.odt", "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content)
    return [
        Sample("letter.rtf", "The volunteers meet at the harbour at seven."),
        Sample("guide.odt", "Puffins oil their feathers each day to keep them waterproof.",
               {"header_path": "/Field guide/"}),
    ]  # fmt: skip


#: Lines drawn as pixels, for OCR: large, plain, black on white, as a clean scan is.
SCANNED = ["Scanned letter about puffins", "The harbour seal shares the cove"]


def drawn_page(lines: list[str], size: tuple[int, int] = (1700, 700)) -> object:
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=56)
    for n, line in enumerate(lines):
        draw.text((80, 80 + 110 * n), line, fill="black", font=font)
    return page


def scans(folder: Path) -> list[Sample]:
    page = drawn_page(SCANNED)
    page.save(folder / "scan.png")  # type: ignore[attr-defined]
    page.save(folder / "scan.pdf", format="PDF", resolution=200)  # type: ignore[attr-defined]
    return [
        Sample("scan.png", "The harbour seal shares the cove", {"page_label": "1", "ocr": 1}),
        Sample("scan.pdf", "The harbour seal shares the cove", {"page_label": "1", "ocr": 1}),
    ]


def every_type(folder: Path) -> list[Sample]:
    """Write one file (or a few) of every type into ``folder``; the samples they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = [
        *pptx(folder / "deck.pptx"), *xlsx(folder / "book.xlsx"), *epub(folder / "puffins.epub"),
        *eml(folder / "report.eml"), *mbox(folder / "inbox.mbox"), *ipynb(folder / "count.ipynb"),
        *data_files(folder), *code_files(folder), *documents(folder),
    ]  # fmt: skip
    return samples


def hostile(folder: Path) -> dict[str, tuple[str, str]]:
    """A hostile file of each new type: {name: (expected status, a word of the reason)}."""
    from openpyxl import Workbook
    from PIL import Image

    rng = random.Random(11)
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.pptx"
    pptx(good)
    (folder / "truncated.pptx").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    (folder / "notes.xlsx").write_text("I am a text file with the wrong extension.")
    sheet = Workbook()
    sheet.active["A1"] = "top"
    sheet.active.cell(row=1_048_576, column=10, value="bottom")  # (declares 10,485,760 cells)
    sheet.save(folder / "enormous.xlsx")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "bomb.yaml").write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)
        )
    )
    (folder / "laughs.xml").write_text('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "ha">'
                                       '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>')  # fmt: skip
    (folder / "broken.epub").write_bytes(b"PK\x03\x04" + rng.randbytes(2000))
    (folder / "broken.ipynb").write_text('{"cells": "not a list"}')
    big = message("Big attachment", "The body of a message with a 50 MB attachment.",
                  ("huge.bin", rng.randbytes(50 * 2**20)))  # fmt: skip
    (folder / "big.eml").write_bytes(bytes(big))
    (folder / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(3000))
    Image.new("RGB", (400, 300), "white").save(folder / "blank.png")
    out = io.BytesIO()
    Image.new("RGB", (800, 600), "white").save(out, format="PDF")
    (folder / "blank-scan.pdf").write_bytes(out.getvalue())
    with zipfile.ZipFile(folder / "hollow.odt", "w") as z:  # (an OpenDocument without its content)
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
    (folder / "binary.rtf").write_bytes(rng.randbytes(4096))
    (folder / "binary.py").write_bytes(rng.randbytes(4096))
    (folder / "nomail.mbox").write_text("no message starts with a From line here\n")
    (folder / "text.jpg").write_text("I am text with an image's extension.")
    (folder / "truncated.tif").write_bytes(b"II*\x00" + rng.randbytes(500))
    return {
        "hollow.odt": ("failed", "cannot read odt"),
        "binary.rtf": ("failed", "binary"),
        "binary.py": ("failed", "binary"),
        "nomail.mbox": ("failed", "not an mbox file"),
        "text.jpg": ("failed", "cannot read jpg"),
        "truncated.tif": ("failed", "cannot read tif"),
        "truncated.pptx": ("failed", "not a pptx file"),
        "notes.xlsx": ("failed", "not a xlsx file"),
        "enormous.xlsx": ("failed", "10,485,760 cells"),
        "deep.json": ("failed", "nested too deep"),
        "bomb.yaml": ("failed", "more than 1,000,000 values"),
        "laughs.xml": ("failed", "EntitiesForbidden"),
        "broken.epub": ("failed", "not a epub file"),
        "broken.ipynb": ("failed", "not a Jupyter notebook"),
        "big.eml": ("indexed", ""),  # its body; the attachment is left out, and named in the log
        "noise.png": ("failed", "cannot read png"),
        "blank.png": ("skipped", "OCR found none"),
        "blank-scan.pdf": ("skipped", "its pages are blank"),
    }
