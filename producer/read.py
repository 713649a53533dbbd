"""Reading files into sections, one clear reason per file that fails: the reader of each type
(``READERS``; those beyond text, Markdown, HTML, PDF, .docx and .csv live in ``formats``), chosen
by extension or, where the content says otherwise, by content."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropvec.config.errors import SkippedFile, UnreadableFile
from dropvec.producer import formats
from dropvec.producer.chunk import Section
from dropvec.producer.decode import (
    check_zip,
    clean_text,
    decode_markup,
    decode_text,
    detect_encoding,
    read_bytes,
    sniff,
)
from dropvec.producer.formats import Ocr, ocr_image
from dropvec.producer.markup import html_sections, markdown_sections

if TYPE_CHECKING:
    import pypdfium2

log = logging.getLogger(__name__)


def _pdf_text(text: str) -> str:
    """PDFium's page text with its hyphen marks read: U+0002 stands for a hyphen the PDF's font
    draws without a character code ("front-of\x02house"); at a line end it is a word broken
    across the line, which is joined."""
    text = text.replace("\r\n", "\n")
    return text.replace("\x02\n", "").replace("\x02", "-")


def pdf_sections(path: Path, ocr: Ocr) -> Iterator[Section]:
    """One section per page, its text extracted by PDFium (``pypdfium2``), with its page label;
    a page without a text layer is rendered and read by OCR (``ocr``), up to ``ocr.max_pages``.

    The document is opened here (a file that does not open fails at once); its pages are read as
    the sections are taken, so that the first tasks of a long PDF leave while the rest is read.

    llama-index's ``PDFReader`` (pypdf) spent 22 s of a core on the two seed 10-Ks, which PDFium
    reads in 1 s, and it runs words together at line ends ("actionsfrom") where PDFium keeps the
    break. PDFs encrypted with an empty user password open as they do in a viewer; damaged cross
    reference tables are rebuilt.
    """
    import pypdfium2

    return _pdf_pages(pypdfium2.PdfDocument(str(path)), path, ocr)


def _pdf_pages(pdf: pypdfium2.PdfDocument, path: Path, ocr: Ocr) -> Iterator[Section]:
    """The sections of ``pdf_sections``, page by page; SkippedFile at the end if no page had text,
    UnreadableFile (with the reader's reason) if a page cannot be read."""
    scanned = rendered = blank = 0
    any_text, began = False, time.perf_counter()
    try:
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            text = _pdf_text(textpage.get_text_bounded())
            textpage.close()
            meta: dict[str, str | int | float] = {"page_label": pdf.get_page_label(i) or str(i + 1)}
            if not text.strip():
                scanned += 1
                if ocr.available and rendered < ocr.max_pages:  # (blank or not: each one costs)
                    rendered += 1
                    if nothing_drawn(page):
                        blank += 1  # (not rendered: a render at OCR's resolution took 66 ms)
                    else:
                        width, height = page.get_size()  # (in points: 1/72 inch)
                        scale = min(OCR_DPI / 72, (OCR_MAX_PIXELS / max(1.0, width * height)) ** 0.5)
                        image = page.render(scale=scale).to_pil()
                        if blank_page(image):
                            blank += 1  # (drawn in one colour: Tesseract would take a second to find nothing)
                        else:
                            text, meta["ocr"] = ocr_image(image, ocr), 1
            page.close()
            section = Section(clean_text(text, path), meta)
            any_text = any_text or bool(section.text.strip())
            yield section
    except (SkippedFile, UnreadableFile):
        raise
    except Exception as exc:
        raise _unreadable(path, ".pdf", exc) from exc
    finally:
        pdf.close()
    if rendered > blank:
        log.info("OCR of %s: %d page(s) in %.1f s", path, rendered - blank, time.perf_counter() - began)
    if scanned and not any_text:
        if rendered > blank:
            raise SkippedFile(path, "no text (OCR found none)")
        if blank == scanned:
            raise SkippedFile(path, "no text (its pages are blank)")
        if ocr.available:
            raise SkippedFile(
                path, f"no text: {blank} page(s) blank, {scanned - rendered} past the OCR page cap "
                f"(DROPVEC_OCR_MAX_PAGES={ocr.max_pages})",
            )  # fmt: skip
        why = (
            "OCR is off (DROPVEC_OCR=off)"
            if not ocr.enabled
            else "OCR needs Tesseract (apt-get install tesseract-ocr)"
        )
        raise SkippedFile(path, f"no text layer (a scan?): {why}")


def nothing_drawn(page: pypdfium2.PdfPage) -> bool:
    """Whether a page holds nothing to draw: no page object (text, path, image, form) and no
    annotation."""
    import pypdfium2.raw as pdfium_c

    return pdfium_c.FPDFPage_CountObjects(page) == 0 and pdfium_c.FPDFPage_GetAnnotCount(page) == 0


def blank_page(image: Any) -> bool:
    """Whether a rendered page is one colour all over (nothing drawn on it): every band of it
    constant (grey levels alone would call red on an equally bright grey blank)."""
    extrema = image.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def docx_sections(path: Path) -> list[Section]:
    """A Word file's text, by docx2txt (what llama-index's ``DocxReader`` reads)."""
    import docx2txt

    return [Section(clean_text(docx2txt.process(str(path)), path))]


def csv_sections(path: Path) -> list[Section]:
    """A table's rows, one a line, their cells joined by ", " (as llama-index's ``CSVReader``
    with ``concat_rows``), in the encoding detected as for any text."""
    rows = csv.reader(io.StringIO(decode_text(read_bytes(path), path), newline=None))
    return [Section("\n".join(", ".join(row) for row in rows))]


def _markup(sections: Callable[[str], list[Section]]) -> Callable[[Path], list[Section]]:
    return lambda path: sections(decode_markup(read_bytes(path), path))


#: Pages rendered for OCR at this resolution (Tesseract reads body text best at about 300 dpi)...
OCR_DPI = 300
#: ... in at most this many pixels (an A4 page at 300 dpi has 8.7 million; a poster, far more).
OCR_MAX_PIXELS = 40_000_000
#: Formats read whole, by extension. Plain text (TEXT) is streamed; PDF and images take the OCR
#: settings; mail takes the reader of its attachments.
READERS: dict[str, Callable[[Path], list[Section]]] = {
    ".md": _markup(markdown_sections),
    ".markdown": _markup(markdown_sections),
    ".html": _markup(html_sections),
    ".htm": _markup(html_sections),
    ".xhtml": _markup(html_sections),
    ".docx": docx_sections,
    ".csv": csv_sections,
    ".pptx": formats.pptx_sections,
    ".xlsx": formats.xlsx_sections,
    ".epub": formats.epub_sections,
    ".ipynb": formats.ipynb_sections,
    ".json": formats.json_sections,
    ".yaml": formats.yaml_sections,
    ".yml": formats.yaml_sections,
    ".xml": formats.xml_sections,
    ".rtf": formats.rtf_sections,
    ".odt": formats.odt_sections,
    **dict.fromkeys(formats.CODE, formats.code_sections),
}
TEXT = (".txt", ".text", ".rst", ".log", ".tex")
MAIL = (".eml", ".mbox")
IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
#: Zip archives: their directory is checked (a zip bomb is refused) before a reader opens them.
ARCHIVES = (".docx", ".pptx", ".xlsx", ".epub", ".odt")
SUPPORTED = frozenset([*READERS, *TEXT, *MAIL, *IMAGES, ".pdf"])

#: Plain text files larger than this are read block by block, this many bytes at a time.
STREAM_BLOCK_BYTES = 4 * 2**20
#: Text running on this long without a paragraph break is cut, at a line end or space.
MAX_PARAGRAPH_CHARS = 2**20


def is_supported(path: Path) -> bool:
    """Whether dropvec reads ``path``: by its extension, or by its content where that names a
    format it reads."""
    return path.suffix.lower() in SUPPORTED or sniff(path) in SUPPORTED


def real_type(path: Path) -> str:
    """The type ``path`` is read as: its content's where the first bytes name a format and the
    extension another (a PDF named .txt is read as a PDF), else its extension."""
    named = path.suffix.lower()
    found = sniff(path)
    if found is None or found == named or {found, named} in ({".jpg", ".jpeg"}, {".tif", ".tiff"}):
        return named
    if found == ".zip" and named in ARCHIVES:
        return named  # (an archive of another kind: its reader says what is missing)
    log.info("%s: read as %s, its content, not as its extension says", path, found)
    return found


def text_sections(path: Path) -> Iterator[Section]:
    """A plain text file as sections: one, or for a large file, blocks read one at a time.

    Blocks end at a paragraph break (or, in a paragraph longer than MAX_PARAGRAPH_CHARS, at a line
    end or space) and are joined again by the chunker, so memory stays bounded at any file size.
    The encoding is detected on the first block; bytes that do not fit it later are replaced.
    """
    with path.open("rb") as f:
        head = f.read(STREAM_BLOCK_BYTES + 1)
    if len(head) <= STREAM_BLOCK_BYTES:
        return iter([Section(decode_text(head, path))])
    return _text_blocks(path, head, detect_encoding(head, path, whole=False))


def _text_blocks(path: Path, head: bytes, encoding: str) -> Iterator[Section]:
    """The file's text block by block, from ``head`` (its first bytes, already read) on."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    carry, joined = "", False
    try:
        with path.open("rb") as f:
            f.seek(len(head))
            for block in itertools.chain([head], iter(lambda: f.read(STREAM_BLOCK_BYTES), b"")):
                text = carry + clean_text(decoder.decode(block), path)
                cut = _seam(text)
                yield Section(text[:cut], joined=joined)
                carry, joined = text[cut:], True
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from exc
    tail = carry + clean_text(decoder.decode(b"", final=True), path)
    if tail:
        yield Section(tail, joined=True)


def _seam(text: str) -> int:
    """Where a block's text ends: after its last paragraph break within reach of the end."""
    reach = max(0, len(text) - MAX_PARAGRAPH_CHARS)
    for separator in ("\n\n", "\n", " "):
        at = text.rfind(separator, reach)
        if at >= 0:
            return at + len(separator)
    return len(text)


def read_sections(path: Path, ocr: Ocr | None = None) -> Iterator[Section]:
    """Read ``path`` into sections; a large plain text file and a PDF are read as they are taken.
    ``ocr``: how scans and images are read (default: by Tesseract where it is installed).

    Raises SkippedFile or UnreadableFile with a one-line reason (a large text file or a PDF:
    possibly while its sections are taken).
    """
    ocr = ocr or Ocr()
    kind = real_type(path)
    if kind not in SUPPORTED:
        named = path.suffix.lower() or "(no extension)"
        content = f" (its content is {kind[1:]})" if kind != path.suffix.lower() else ""
        raise SkippedFile(path, f"unsupported file type {named}{content}")
    if kind in ARCHIVES:
        check_zip(path)
    try:
        if kind in TEXT:
            return text_sections(path)
        if kind == ".pdf":
            return pdf_sections(path, ocr)
        if kind in IMAGES:
            sections = formats.image_sections(path, ocr)
        elif kind in MAIL:
            read_mail = formats.eml_sections if kind == ".eml" else formats.mbox_sections
            sections = read_mail(path, lambda name, data: _attachment(name, data, ocr))
        else:
            sections = READERS[kind](path)
    except (SkippedFile, UnreadableFile):
        raise
    except Exception as exc:  # readers raise anything: each is the file's problem, told in one line
        raise _unreadable(path, kind, exc) from exc
    return iter(sections)


def _unreadable(path: Path, kind: str, exc: Exception) -> UnreadableFile:
    """A reader's failure on ``path`` (read as ``kind``), in one line."""
    log.debug("reader failed on %s", path, exc_info=True)
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    return UnreadableFile(path, f"cannot read {kind[1:]}: {reason}")


def _attachment(name: str, data: bytes, ocr: Ocr) -> list[Section]:
    """An e-mail attachment's sections, read by the reader of its type (mail in mail is not read)."""
    suffix = Path(name).suffix.lower()
    if suffix in MAIL or not suffix.isascii() or not suffix[1:].isalnum():
        return []
    with tempfile.TemporaryDirectory(prefix="dropvec-attachment-") as folder:
        path = Path(folder) / f"attachment{suffix}"
        path.write_bytes(data)
        return list(read_sections(path, ocr))
