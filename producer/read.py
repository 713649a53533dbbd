"""Reading files into sections with llama-index readers, one clear reason per file that fails."""

from __future__ import annotations

import codecs
import itertools
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from dropvec.config.errors import SkippedFile, UnreadableFile
from dropvec.producer.chunk import Section
from dropvec.producer.markup import html_sections, markdown_sections

log = logging.getLogger(__name__)


def _pdf_text(text: str) -> str:
    """PDFium's page text with its hyphen marks read: U+0002 stands for a hyphen the PDF's font
    draws without a character code ("front-of\x02house"); at a line end it is a word broken
    across the line, which is joined."""
    text = text.replace("\r\n", "\n")
    return text.replace("\x02\n", "").replace("\x02", "-")


class PdfiumReader(BaseReader):
    """One document per page, its text extracted by PDFium (``pypdfium2``), with its page label.

    llama-index's ``PDFReader`` (pypdf) spent 22 s of a core on the two seed 10-Ks, which PDFium
    reads in 1 s, and it runs words together at line ends ("actionsfrom") where PDFium keeps the
    break. PDFs encrypted with an empty user password open as they do in a viewer; damaged cross
    reference tables are rebuilt.
    """

    def load_data(self, file: Path, extra_info: dict | None = None) -> list[Document]:
        import pypdfium2

        pdf = pypdfium2.PdfDocument(str(file))
        try:
            documents = []
            for i in range(len(pdf)):
                page = pdf[i]
                textpage = page.get_textpage()
                text = _pdf_text(textpage.get_text_bounded())
                textpage.close()
                page.close()
                label = pdf.get_page_label(i) or str(i + 1)
                documents.append(Document(text=text, metadata={"page_label": label, **(extra_info or {})}))
            return documents
        finally:
            pdf.close()


def _pdf() -> BaseReader:
    return PdfiumReader()


def _docx() -> BaseReader:
    from llama_index.readers.file import DocxReader

    return DocxReader()


def _csv() -> BaseReader:
    from llama_index.readers.file import CSVReader

    return CSVReader(concat_rows=True)


#: Supported extensions and their reader; None means plain text, decoded here.
READERS: dict[str, Callable[[], BaseReader] | None] = {
    ".txt": None,
    ".text": None,
    ".rst": None,
    ".md": None,
    ".markdown": None,
    ".pdf": _pdf,
    ".docx": _docx,
    ".csv": _csv,
    ".html": None,
    ".htm": None,
}
#: Text formats cut into sections under their headings, after decoding (``markup``).
MARKUP: dict[str, Callable[[str], list[Section]]] = {
    ".md": markdown_sections,
    ".markdown": markdown_sections,
    ".html": html_sections,
    ".htm": html_sections,
}

#: Scalar reader metadata worth keeping on chunks.
KEPT_READER_METADATA = ("page_label", "header_path", "title")


#: Plain text files larger than this are read block by block, this many bytes at a time.
STREAM_BLOCK_BYTES = 4 * 2**20
#: Text running on this long without a paragraph break is cut, at a line end or space.
MAX_PARAGRAPH_CHARS = 2**20

#: A .docx may inflate to at most this many times its size (a zip bomb inflates thousands of times).
MAX_ZIP_RATIO = 100
#: ... and to at most this many bytes in all.
MAX_ZIP_INFLATED_BYTES = 256 * 2**20


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


def check_zip(path: Path) -> None:
    """Refuse an Office file that is not a zip archive, or would inflate past the limits,
    from its directory alone: nothing is inflated to find out."""
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFile(
            path, f"not a {path.suffix.lower()[1:]} file (not a zip archive): {exc}"
        ) from exc
    if inflated > MAX_ZIP_INFLATED_BYTES or inflated > MAX_ZIP_RATIO * max(1, path.stat().st_size):
        limit = f"{MAX_ZIP_INFLATED_BYTES >> 20} MB, {MAX_ZIP_RATIO}x its size"
        raise UnreadableFile(path, f"refused: would inflate to {inflated / 2**20:.0f} MB (limit {limit})")


def decode_text(data: bytes, path: Path) -> str:
    """The text of ``data`` (a whole file), without NUL characters; binary data is refused."""
    return _clean(data.decode(detect_encoding(data, path)), path)


def decode_markup(data: bytes, path: Path) -> str:
    """The text of a Markdown or HTML file: in the encoding an HTML page declares (``<meta
    charset>``), where it has a valid one and no byte-order mark says otherwise; else as text."""
    if path.suffix.lower() in (".html", ".htm") and not data.startswith(
        (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")
    ):
        from bs4.dammit import EncodingDetector

        declared = EncodingDetector.find_declared_encoding(data, is_html=True)
        if declared:
            try:
                return _clean(data.decode(declared), path)
            except (LookupError, UnicodeDecodeError):
                pass  # (a page that lies about its encoding: detected as any text is)
    return decode_text(data, path)


def _clean(text: str, path: Path) -> str:
    """``text`` without NULs and BOMs; mostly NULs means binary data, refused."""
    if text.count("\x00") > len(text) // 10:
        raise UnreadableFile(path, "binary data, not text")
    return text.replace("\x00", "").replace("\ufeff", "")


def detect_encoding(data: bytes, path: Path, *, whole: bool = True) -> str:
    """UTF-16 by its BOM, UTF-8 (with or without BOM), else a detected encoding.

    ``whole``: ``data`` is the whole file; else its first block, whose last character may be cut.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=whole)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:8192]:
        raise UnreadableFile(path, "binary data, not text")
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is not None:
        # charset_normalizer often ties Western text between code pages: Windows-1252 is the usual one
        tied = (m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence))
        best = next((m for m in tied if m.encoding == "cp1252"), best)
    if best is not None and best.coherence > 0:
        return str(best.encoding)
    # No language recognised: Windows-1252, the usual legacy encoding of Western text, if it fits.
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        pass
    if best is None:
        raise UnreadableFile(path, "not valid text in any known encoding")
    return str(best.encoding)


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
                text = carry + _clean(decoder.decode(block), path)
                cut = _seam(text)
                yield Section(text[:cut], joined=joined)
                carry, joined = text[cut:], True
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from exc
    tail = carry + _clean(decoder.decode(b"", final=True), path)
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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from exc


def _last_attempt(exc: BaseException) -> BaseException:
    """The error behind a reader's retry wrapper (llama-index retries some readers with tenacity)."""
    attempt = getattr(exc, "last_attempt", None)
    inner = attempt.exception() if attempt is not None else None
    return inner if isinstance(inner, BaseException) else exc


def read_sections(path: Path) -> Iterator[Section]:
    """Read ``path`` into sections; a large plain text file is read as they are taken.

    Raises SkippedFile or UnreadableFile with a one-line reason (a large text file: possibly while
    its sections are taken).
    """
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise SkippedFile(path, f"unsupported file type {suffix or '(no extension)'}")
    make_reader = READERS[suffix]
    if suffix == ".docx":
        check_zip(path)
    try:
        if suffix in MARKUP:
            return iter(MARKUP[suffix](decode_markup(_read_bytes(path), path)))
        if make_reader is None:
            return text_sections(path)
        documents = make_reader().load_data(path)
    except (SkippedFile, UnreadableFile):
        raise
    except Exception as exc:  # readers raise anything: each is the file's problem, told in one line
        log.debug("reader failed on %s", path, exc_info=True)
        cause = _last_attempt(exc)
        raise UnreadableFile(path, f"cannot read {suffix[1:]}: {type(cause).__name__}: {cause}") from exc
    return (Section(_clean(doc.text, path), _kept(doc.metadata)) for doc in documents)


def _kept(metadata: dict[str, object]) -> dict[str, str | int | float]:
    return {
        k: v for k, v in metadata.items() if k in KEPT_READER_METADATA and isinstance(v, (str, int, float))
    }
