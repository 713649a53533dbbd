"""Bytes to text: encodings detected, binary data refused, Office archives checked before they
are opened, and a file's real type told by its first bytes where its extension lies."""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path

from dropvec.config.errors import UnreadableFile

#: A .docx may inflate to at most this many times its size (a zip bomb inflates thousands of times).
MAX_ZIP_RATIO = 100
#: ... and to at most this many bytes in all.
MAX_ZIP_INFLATED_BYTES = 256 * 2**20


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


def read_bytes(path: Path) -> bytes:
    """The whole of ``path``; a file that cannot be read is UnreadableFile, with the reason."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from exc


def decode_text(data: bytes, path: Path) -> str:
    """The text of ``data`` (a whole file), without NUL characters; binary data is refused."""
    return clean_text(data.decode(detect_encoding(data, path)), path)


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
                return clean_text(data.decode(declared), path)
            except (LookupError, UnicodeDecodeError):
                pass  # (a page that lies about its encoding: detected as any text is)
    return decode_text(data, path)


def clean_text(text: str, path: Path) -> str:
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


#: Archives told apart by a member only their kind holds (or by the ``mimetype`` member's text).
ZIP_KINDS = {"word/document.xml": ".docx", "ppt/presentation.xml": ".pptx", "xl/workbook.xml": ".xlsx"}
ZIP_MIMETYPES = {b"application/epub+zip": ".epub", b"application/vnd.oasis.opendocument.text": ".odt"}
#: Leading bytes of the binary formats dropvec reads.
SIGNATURES = {
    b"%PDF-": ".pdf", b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif",
    b"MM\x00*": ".tif", b"{\\rtf": ".rtf",
}  # fmt: skip


def sniff(path: Path) -> str | None:
    """The type ``path``'s content shows (an extension such as ``.pdf``), or None where its first
    bytes name none of the binary formats dropvec reads (text, or an unknown binary format)."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return None  # (the reader says why it cannot be read)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ".webp"
    for signature, kind in SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if not head.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "mimetype" in names:
                mimetype = archive.read("mimetype")[:100].strip()
                if mimetype in ZIP_MIMETYPES:
                    return ZIP_MIMETYPES[mimetype]
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return ".zip"
    return next((kind for member, kind in ZIP_KINDS.items() if member in names), ".zip")
