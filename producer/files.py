"""The folder as the producer sees it: which files to read, whether one is still being written,
and whether it changed while it was read."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import psutil

from dropvec.config.settings import DEFAULT_IGNORE

#: Whether open file modes can be read (psutil reports them on Linux only).
WRITERS_VISIBLE = sys.platform.startswith("linux")
_WRITE_MODES = ("w", "a", "r+", "a+", "w+")

#: What identifies one state of a file's content without reading it: size and modification time.
Signature = tuple[int, int]


def is_ignored(path: Path, patterns: Sequence[str] = DEFAULT_IGNORE) -> bool:
    """Whether ``path``'s name matches one of ``patterns`` (temporary, lock and hidden files)."""
    return any(fnmatch.fnmatchcase(path.name, pattern) for pattern in patterns)


def expand(paths: Iterable[Path], ignore: Sequence[str] = DEFAULT_IGNORE) -> Iterator[Path]:
    """Files named, and the files under folders named, in a stable order; links never followed.

    A symbolic link, named or met inside a folder (to a file or to a folder), is listed as it is
    and not walked: the producer skips it with its reason. Inside folders, files and folders whose
    names match ``ignore`` are left out.
    """
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
                dirs[:] = sorted(d for d in dirs if d not in links and not is_ignored(Path(d), ignore))
                for name in sorted([*files, *links]):
                    if not is_ignored(Path(name), ignore):
                        yield Path(root) / name
        else:
            yield path


def link_on_path(path: Path, base: Path) -> Path | None:
    """The first part of ``path`` below ``base`` (``path`` itself included) that is a symbolic
    link; None if there is none. Links in ``base`` itself and above it are the user's own layout."""
    current = base
    for part in path.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def signature(path: Path) -> Signature | None:
    """The file's size and modification time; None if it is gone. A symbolic link's own (it is
    not followed), so a file swapped for a link changes its signature."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def open_for_writing(paths: set[Path]) -> set[Path]:
    """Those of ``paths`` that some process we may inspect holds open for writing."""
    if not paths or not WRITERS_VISIBLE:
        return set()
    wanted = {str(p) for p in paths}
    busy: set[Path] = set()
    for proc in psutil.process_iter():
        try:
            files = proc.open_files()
        except (psutil.Error, OSError):
            continue
        busy.update(Path(f.path) for f in files if f.path in wanted and f.mode in _WRITE_MODES)
    return busy


def has_utf8_name(path: Path) -> bool:
    """Whether ``path`` can be held as text (in Redis, in Milvus): a name that is not valid UTF-8
    cannot, and its file is skipped without a record."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
