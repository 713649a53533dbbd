"""Readers for the formats beyond text, Markdown, HTML, PDF, .docx and .csv: slide decks,
workbooks, e-books, mail, notebooks, data files, source code, OpenDocument and RTF text, and
images through OCR. Each returns the file's sections, with the metadata that tells a reader
where a passage is (``slide``, ``sheet``, ``chapter``, ``subject``, ``symbol``), or raises
``UnreadableFile``/``SkippedFile`` with one line that says why.

The libraries are the field's own: python-pptx, openpyxl, EbookLib, the standard library's
``email``, ``mailbox``, ``json`` and ``ast``, PyYAML, defusedxml, striprtf, Pillow and
Tesseract (through pytesseract). Everything a hostile file could make unbounded is bounded here:
cells, values, nesting, attachments, pages and OCR time.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropvec.config.errors import SkippedFile, UnreadableFile
from dropvec.producer.chunk import Section
from dropvec.producer.decode import clean_text, decode_markup, decode_text, read_bytes
from dropvec.producer.markup import Headings, html_sections, markdown_sections

log = logging.getLogger(__name__)

#: A workbook is refused when its sheets hold (or declare) more cells than this.
MAX_CELLS = 2_000_000
#: A data file (.json, .yaml, .xml) is refused past this many values, or this deep.
MAX_VALUES = 1_000_000
MAX_DEPTH = 200
#: An e-mail attachment larger than this is left out (the message is still read), and named.
MAX_ATTACHMENT_BYTES = 20 * 2**20
#: Messages read from one .mbox at most.
MAX_MESSAGES = 100_000

Reader = Callable[[Path], list[Section]]


# Slide decks, workbooks, e-books


def pptx_sections(path: Path) -> list[Section]:
    """Every slide's text (text frames, tables, grouped shapes) and its speaker notes; ``slide``:
    its number, ``title``: its title."""
    from pptx import Presentation
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    with path.open("rb") as f:  # (a file, not a name: the content decides, not the extension)
        deck = Presentation(f)
    sections = []
    for number, slide in enumerate(deck.slides, 1):
        parts: list[str] = []
        shapes = list(slide.shapes)
        while shapes:
            shape = shapes.pop(0)
            if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
                shapes[:0] = list(shape.shapes)
            elif getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
                parts.append(shape.text_frame.text)
            elif getattr(shape, "has_table", False):
                rows = (" | ".join(c.text for c in row.cells) for row in shape.table.rows)
                parts.append("\n".join(rows))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text
            if notes.strip():
                parts.append(f"Notes: {notes}")
        title = slide.shapes.title.text_frame.text if slide.shapes.title is not None else ""
        meta: dict[str, str | int | float] = {"slide": number, **({"title": title} if title else {})}
        if parts:
            sections.append(Section("\n\n".join(parts), meta))
    return sections


def xlsx_sections(path: Path) -> list[Section]:
    """Every worksheet row by row, each cell named by its column's header (``Header: value; ...``);
    ``sheet``: its name. A workbook of more than MAX_CELLS cells is refused."""
    from openpyxl import load_workbook

    with path.open("rb") as f:  # (a file, not a name: openpyxl refuses names not ending in .xlsx)
        return _sheets(path, load_workbook(f, read_only=True, data_only=True))


def _sheets(path: Path, book: Any) -> list[Section]:
    try:
        declared = sum((ws.max_row or 0) * (ws.max_column or 0) for ws in book.worksheets)
        if declared > MAX_CELLS:
            raise UnreadableFile(path, f"refused: {declared:,} cells (limit {MAX_CELLS:,})")
        sections, cells = [], 0
        for sheet in book.worksheets:
            header: list[str] = []
            lines = []
            for row in sheet.iter_rows(values_only=True):
                cells += len(row)
                if cells > MAX_CELLS:
                    raise UnreadableFile(path, f"refused: more than {MAX_CELLS:,} cells")
                values = ["" if v is None else str(v).strip() for v in row]
                if not any(values):
                    continue
                if not header:
                    header = [v or f"column {i}" for i, v in enumerate(values, 1)]
                    lines.append(" | ".join(header))
                    continue
                named = (f"{header[i] if i < len(header) else f'column {i + 1}'}: {v}"
                         for i, v in enumerate(values) if v)  # fmt: skip
                lines.append("; ".join(named))
            if lines:
                # each row its own paragraph: a chunk never ends inside a row that fits
                sections.append(Section("\n\n".join(lines), {"sheet": sheet.title}))
        return sections
    finally:
        book.close()


def epub_sections(path: Path) -> list[Section]:
    """The chapters in reading order, each cut at its headings; ``chapter``: the chapter's title
    from the table of contents (else its first heading)."""
    import ebooklib
    from ebooklib import epub

    book = epub.read_epub(str(path), options={"ignore_ncx": False})
    titles: dict[str, str] = {}
    toc = list(book.toc)
    while toc:
        entry = toc.pop(0)
        if isinstance(entry, tuple):  # (a section of the table of contents, and its entries)
            section, children = entry
            titles.setdefault(getattr(section, "href", "").split("#")[0], section.title)
            toc[:0] = list(children)
        else:
            titles.setdefault(entry.href.split("#")[0], entry.title)
    book_title = next(iter(book.get_metadata("DC", "title")), ("",))[0]
    sections = []
    for idref, _ in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        parts = html_sections(decode_markup(item.get_content(), Path(item.get_name())))
        chapter = titles.get(item.get_name()) or next(
            (
                str(s.metadata["header_path"]).strip("/").split("/")[0]
                for s in parts
                if "header_path" in s.metadata
            ),
            "",
        )
        for part in parts:
            meta = {**part.metadata, "chapter": chapter} if chapter else dict(part.metadata)
            if book_title:
                meta["title"] = book_title
            sections.append(Section(part.text, meta))
    return sections


# Mail


def eml_sections(path: Path, attachment: Callable[[str, bytes], list[Section]]) -> list[Section]:
    """One message: its subject, sender, recipients and date, its text (plain, else HTML), and
    its attachments read by their own readers (``attachment``)."""
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(read_bytes(path))
    return _message(path, message, attachment)


def mbox_sections(path: Path, attachment: Callable[[str, bytes], list[Section]]) -> list[Section]:
    """Every message of a mailbox, as ``eml_sections`` reads one."""
    import mailbox
    from email import policy
    from email.parser import BytesParser

    with path.open("rb") as f:
        if not f.read(5) == b"From ":
            raise UnreadableFile(path, "not an mbox file: it does not start with a 'From ' line")
    box = mailbox.mbox(str(path), create=False)
    sections: list[Section] = []
    try:
        for key in itertools.islice(box.iterkeys(), MAX_MESSAGES):
            message = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
            sections.extend(_message(path, message, attachment))
    finally:
        box.close()
    return sections


def _message(path: Path, message: Any, attachment: Callable[[str, bytes], list[Section]]) -> list[Section]:
    subject = " ".join(str(message.get("subject", "")).split())
    headers = [f"{name}: {' '.join(str(message[name]).split())}" for name in ("Subject", "From", "To", "Date")
               if message.get(name)]  # fmt: skip
    meta: dict[str, str | int | float] = {"subject": subject} if subject else {}
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        content = body.get_content()
        text = (
            "\n\n".join(s.text for s in html_sections(content))
            if body.get_content_subtype() == "html"
            else content
        )
    sections = [Section(clean_text("\n".join(headers) + "\n\n" + text, path), meta)]
    for part in message.iter_attachments():
        name = part.get_filename() or ""
        payload = part.get_payload(decode=True) or b""
        if not name or not Path(name).suffix:
            continue
        if len(payload) > MAX_ATTACHMENT_BYTES:
            log.warning("%s: attachment %r left out: %d MB (limit %d MB)", path, name, len(payload) >> 20,
                        MAX_ATTACHMENT_BYTES >> 20)  # fmt: skip
            continue
        try:
            for section in attachment(name, payload):
                sections.append(Section(section.text, {**section.metadata, **meta, "attachment": name}))
        except (SkippedFile, UnreadableFile) as exc:
            log.info("%s: attachment %r not read: %s", path, name, exc.reason)
    return sections


# Notebooks and data files


def ipynb_sections(path: Path) -> list[Section]:
    """A Jupyter notebook's Markdown and code cells, in order (outputs are not read); ``cell``:
    the cell's number."""
    try:
        notebook = json.loads(decode_text(read_bytes(path), path))
        cells = notebook["cells"] if isinstance(notebook, dict) else None
        if not isinstance(cells, list):
            raise TypeError("no list of cells")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UnreadableFile(path, f"not a Jupyter notebook: {exc}") from None
    sections: list[Section] = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if not source.strip():
            continue
        if cell.get("cell_type") == "markdown":
            sections.extend(
                Section(s.text, {**s.metadata, "cell": number}) for s in markdown_sections(source)
            )
        elif cell.get("cell_type") == "code":
            sections.append(Section(source, {"cell": number}))
    return sections


def json_sections(path: Path) -> list[Section]:
    """A JSON document's values, each with its key path (``items[2].name: Ada``)."""
    try:
        data = json.loads(decode_text(read_bytes(path), path))
    except RecursionError:
        raise UnreadableFile(path, "refused: nested too deep") from None
    except ValueError as exc:
        raise UnreadableFile(path, f"not valid JSON: {exc}") from None
    return _flattened(path, [data])


def yaml_sections(path: Path) -> list[Section]:
    """A YAML file's documents, their values each with its key path. Only plain data is built
    (``safe_load``): no tags that run code."""
    import yaml

    try:
        documents = list(yaml.safe_load_all(decode_text(read_bytes(path), path)))
    except RecursionError:
        raise UnreadableFile(path, "refused: nested too deep") from None
    except yaml.YAMLError as exc:
        raise UnreadableFile(path, f"not valid YAML: {' '.join(str(exc).split())}") from None
    return _flattened(path, documents)


def xml_sections(path: Path) -> list[Section]:
    """An XML document's text and attribute values, each with its element path. Parsed by
    defusedxml: entity expansion (billion laughs) and external entities are refused."""
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        root = ET.fromstring(read_bytes(path))
    except DefusedXmlException as exc:
        raise UnreadableFile(path, f"refused: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise UnreadableFile(path, f"not valid XML: {exc}") from None

    def name(tag: object) -> str:
        return str(tag).rsplit("}", 1)[-1]

    lines: list[str] = []
    stack = [(root, name(root.tag), 0)]
    while stack:
        element, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnreadableFile(path, f"refused: nested deeper than {MAX_DEPTH}")
        lines.extend(f"{where}@{name(k)}: {v}" for k, v in element.attrib.items() if v.strip())
        if element.text and element.text.strip():
            lines.append(f"{where}: {' '.join(element.text.split())}")
        if len(lines) > MAX_VALUES:
            raise UnreadableFile(path, f"refused: more than {MAX_VALUES:,} values")
        children = list(element)
        stack.extend((c, f"{where}/{name(c.tag)}", depth + 1) for c in reversed(children))
        # (a child's tail text belongs to this element)
        lines.extend(f"{where}: {' '.join(c.tail.split())}" for c in children if c.tail and c.tail.strip())
    return [Section("\n".join(lines))] if lines else []


def _flattened(path: Path, documents: list[Any]) -> list[Section]:
    """Scalars of ``documents`` as ``key.path[0]: value`` lines, one paragraph per top-level
    entry; bounded in values and depth (YAML aliases can make a small file enormous)."""
    paragraphs: list[list[str]] = []
    count = 0
    for document in documents:
        top = list(document.items()) if isinstance(document, dict) else [("", document)]
        for key, value in top:
            lines: list[str] = []
            stack: list[tuple[str, Any, int]] = [(str(key), value, 0)]
            while stack:
                where, item, depth = stack.pop()
                if depth > MAX_DEPTH:
                    raise UnreadableFile(path, f"refused: nested deeper than {MAX_DEPTH}")
                count += 1
                if count > MAX_VALUES:
                    raise UnreadableFile(path, f"refused: more than {MAX_VALUES:,} values")
                if isinstance(item, dict):
                    stack.extend((f"{where}.{k}" if where else str(k), v, depth + 1)
                                 for k, v in reversed(list(item.items())))  # fmt: skip
                elif isinstance(item, list):
                    stack.extend((f"{where}[{i}]", v, depth + 1) for i, v in reversed(list(enumerate(item))))
                elif item is not None and str(item).strip():
                    lines.append(f"{where}: {item}" if where else str(item))
            if lines:
                paragraphs.append(lines)
    return [Section("\n\n".join("\n".join(p) for p in paragraphs))] if paragraphs else []


# Source code and other text documents

#: Source files, read as text; Python is cut at its top-level functions and classes.
CODE = (
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".kts",
    ".scala", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".cs", ".swift", ".rb", ".php", ".pl", ".lua",
    ".r", ".jl", ".sh", ".bash", ".zsh", ".ps1", ".sql", ".toml", ".ini", ".cfg", ".css", ".scss",
)  # fmt: skip


def code_sections(path: Path) -> list[Section]:
    """A source file as text; a Python file cut at its top-level definitions (``symbol``: the
    function's or class's name), so that no chunk spans two of them."""
    text = decode_text(read_bytes(path), path)
    if path.suffix.lower() not in (".py", ".pyi"):
        return [Section(text)] if text.strip() else []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [Section(text)] if text.strip() else []  # (not valid Python: read as text)
    lines = text.split("\n")
    sections, start = [], 0
    definitions = [
        n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    for node in definitions:
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        last = node.end_lineno or node.lineno
        before = "\n".join(lines[start:first])
        if before.strip():
            sections.append(Section(before.strip("\n")))
        sections.append(Section("\n".join(lines[first:last]), {"symbol": node.name}))
        start = last
    rest = "\n".join(lines[start:])
    if rest.strip():
        sections.append(Section(rest.strip("\n")))
    return sections


def rtf_sections(path: Path) -> list[Section]:
    from striprtf.striprtf import rtf_to_text

    text = rtf_to_text(decode_text(read_bytes(path), path), errors="ignore")
    return [Section(clean_text(text, path))] if text.strip() else []


def odt_sections(path: Path) -> list[Section]:
    """An OpenDocument text's paragraphs under its headings (``header_path``)."""
    import zipfile

    import defusedxml.ElementTree as ET

    text_ns = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
    with zipfile.ZipFile(path) as archive:
        root = ET.fromstring(archive.read("content.xml"))
    title = ""
    headings, sections, paragraphs = Headings(), list[Section](), list[str]()

    def flush() -> None:
        if paragraphs:
            sections.append(Section("\n\n".join(paragraphs), headings.metadata(title)))
            paragraphs.clear()

    for element in root.iter():
        if element.tag == f"{{{text_ns}}}h":
            flush()
            words = " ".join("".join(element.itertext()).split())
            level = int(element.get(f"{{{text_ns}}}outline-level", "1") or 1)
            title = title or (words if level == 1 else "")
            headings.enter(level, words)
            paragraphs.append(words)
        elif element.tag == f"{{{text_ns}}}p":
            words = " ".join("".join(element.itertext()).split())
            if words:
                paragraphs.append(words)
    flush()
    return sections


# OCR


@dataclass(frozen=True)
class Ocr:
    """How scans and images are read: ``enabled`` (DROPVEC_OCR, and Tesseract installed),
    seconds per page at most, pages per file at most, Tesseract's languages."""

    enabled: bool = True
    page_seconds: float = 60.0
    max_pages: int = 100
    languages: str = "eng"

    @property
    def available(self) -> bool:
        return self.enabled and tesseract_version() is not None


@functools.cache
def tesseract_version() -> str | None:
    """Tesseract's version, or None where it is not installed."""
    import shutil

    if shutil.which("tesseract") is None:
        return None
    import pytesseract

    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, OSError):
        return None


def ocr_image(image: Any, ocr: Ocr) -> str:
    """The text Tesseract reads on one page image, within ``ocr.page_seconds``."""
    import pytesseract

    try:
        return str(pytesseract.image_to_string(image, lang=ocr.languages, timeout=ocr.page_seconds))
    except RuntimeError as exc:  # pytesseract's timeout
        if "timeout" in str(exc).lower():
            log.warning("OCR of a page gave up after %.0f s", ocr.page_seconds)
            return ""
        raise


def image_sections(path: Path, ocr: Ocr) -> list[Section]:
    """An image's text, by OCR: each frame of a multi-page TIFF is a page (``page_label``)."""
    if not ocr.enabled:
        raise SkippedFile(path, "an image: OCR is off (DROPVEC_OCR=off)")
    if not ocr.available:
        raise SkippedFile(path, "an image: OCR needs Tesseract (apt-get install tesseract-ocr)")
    from PIL import Image, ImageSequence

    began = time.perf_counter()
    sections, number = [], 0
    with Image.open(path) as image:
        for number, frame in enumerate(itertools.islice(ImageSequence.Iterator(image), ocr.max_pages), 1):
            text = ocr_image(frame.convert("RGB"), ocr)
            if text.strip():
                sections.append(Section(clean_text(text, path), {"page_label": str(number), "ocr": 1}))
    log.info("OCR of %s: %d page(s) in %.1f s", path, number, time.perf_counter() - began)
    if not sections:
        raise SkippedFile(path, "no text (OCR found none)")
    return sections
