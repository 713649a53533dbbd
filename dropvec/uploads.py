"""Paths from outside (the web page's uploads and deletes) made safe before they touch the disk.

A path from a request is relative to the inbox. It is refused (``BadPath``, a 400) when it is
empty, absolute, holds a NUL or control character, a ``..`` or ``.`` part, a backslash, or a name
the watcher ignores (hidden, temporary), or when any folder on its way is a symbolic link, or
when it resolves outside the inbox. An upload is written to a hidden temporary name in its folder
and renamed when complete, so that the watcher only ever sees whole files; one over
``DROPVEC_MAX_FILE_BYTES`` is refused (``TooLarge``, a 413) and nothing of it stays.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from dropvec.config.settings import Settings
from dropvec.producer.files import is_ignored

#: Bytes read from an upload at a time.
BLOCK = 2**20


class BadPath(ValueError):
    """A path from a request that may not be used."""


class TooLarge(ValueError):
    """An upload over the size limit."""


#: The longest file or folder name (in bytes) that Linux's file systems take.
NAME_MAX = 255


def inbox_path(settings: Settings, relative: str, *, folder: bool = False) -> Path:
    """``relative`` (a path inside the inbox, ``/``-separated) as a path on disk, or BadPath."""
    if not relative or len(relative) > 4096:
        raise BadPath("an empty or over-long path")
    if any(ord(c) < 32 or c == "\x7f" for c in relative) or "\\" in relative:
        raise BadPath("a path with a control character or a backslash")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise BadPath("an absolute path: paths are relative to the inbox")
    parts = relative.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadPath("a path with an empty, '.' or '..' part")
    if any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in parts):
        raise BadPath(f"a name too long for the file system (over {NAME_MAX} bytes)")
    if any(is_ignored(Path(p), settings.ignore) for p in parts):
        raise BadPath("a hidden or temporary name, which the watcher ignores")
    inbox = settings.inbox.resolve()
    path = inbox
    for n, part in enumerate(parts):
        path = path / part
        if path.is_symlink():
            raise BadPath("a path through a symbolic link")
        if n < len(parts) - 1 and path.exists() and not path.is_dir():
            raise BadPath("a path through a file")
    if folder and path.exists() and not path.is_dir():
        raise BadPath("not a folder")
    if not path.resolve().is_relative_to(inbox):  # (belt and braces: the walk above refuses links)
        raise BadPath("a path outside the inbox")
    return path


def save_upload(settings: Settings, folder: str, name: str, source: BinaryIO) -> Path:
    """Write ``source`` to ``folder/name`` in the inbox, whole or not at all; the path written."""
    relative = "/".join(p for p in (folder.strip("/"), name) if p)
    target = inbox_path(settings, relative)
    if target.exists() and target.is_dir():
        raise BadPath("a folder of that name exists")
    inbox = settings.inbox.resolve()
    inbox.mkdir(parents=True, exist_ok=True)
    made = inbox
    for part in target.relative_to(inbox).parts[:-1]:
        made = made / part
        made.mkdir(exist_ok=True)
        if made.is_symlink() or not made.is_dir():  # (a link put there since the check)
            raise BadPath("a path through a symbolic link")
    temporary = target.with_name(f".dropvec-upload-{uuid.uuid4().hex}")
    written = 0
    try:
        with temporary.open("xb") as out:
            for block in _blocks(source):
                written += len(block)
                if written > settings.max_file_bytes:
                    raise TooLarge(
                        f"over the {settings.max_file_bytes / 2**20:.0f} MB limit (DROPVEC_MAX_FILE_BYTES)"
                    )
                out.write(block)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _blocks(source: BinaryIO) -> Iterable[bytes]:
    while block := source.read(BLOCK):
        yield block
