"""Paths built from data stay inside their root.

Every path that comes from data (a token, a file name in a table, an entry of an info
index) is joined to its root with :func:`confined_path`, which normalises it (``..``,
absolute paths) and raises :class:`~lidarcl.errors.DataError` when it leaves the root,
naming the file the entry came from (the index or table) and the entry. Symlinks that the
user placed inside the root are followed (a ``samples/`` folder linked to another disk is
the usual nuScenes set-up); what data cannot do is climb out of the root by itself. File
names derived from tokens go through :func:`safe_file_stem`, so a token such as
``../../x`` cannot name another folder.
"""
from __future__ import annotations

import hashlib
import os
import re

from lidarcl.errors import DataError

__all__ = ["confined_path", "is_inside", "safe_file_stem"]

_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_inside(path: str | os.PathLike, root: str | os.PathLike,
              resolve_symlinks: bool = False) -> bool:
    """Whether ``path`` is ``root`` or below it, after normalising both (``..``, ``.``,
    repeated separators) and, with ``resolve_symlinks``, following symlinks."""
    norm = os.path.realpath if resolve_symlinks else os.path.abspath
    real_root = os.path.normpath(norm(os.fspath(root)))
    real = os.path.normpath(norm(os.fspath(path)))
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def confined_path(root: str | os.PathLike, entry, source: str | os.PathLike | None,
                  what: str) -> str:
    """``root / entry`` as an absolute path, checked to stay inside ``root``.

    Args:
        root: the folder the entry is relative to.
        entry: the path from the data (relative; an absolute one must still lie in root).
        source: the file the entry came from (info index, table), named in the error.
        what: which entry, e.g. ``"sample 3f2a lidar_path"``.

    Raises:
        DataError: ``entry`` is not a non-empty string, holds a NUL byte, or lies
            outside ``root`` (through ``..`` or as an absolute path).
    """
    if not isinstance(entry, str) or not entry:
        raise DataError(source, f"{what} must be a non-empty path string, got {entry!r}")
    if "\x00" in entry:
        raise DataError(source, f"{what} {entry!r} holds a NUL byte")
    root = os.path.abspath(os.fspath(root))
    joined = os.path.normpath(os.path.join(root, entry))
    if not is_inside(joined, root):
        raise DataError(source, f"{what} {entry!r} leaves its root {root} (paths from data "
                                "must stay inside the data root)")
    return joined


def safe_file_stem(token) -> str:
    """A file name stem for a token: the token itself when it is a plain name
    (letters, digits, ``.``, ``_``, ``-``, not starting with ``.``, at most 128 characters),
    otherwise a readable prefix plus a hash of the whole token, so that distinct tokens
    never share a file and no token can name another folder."""
    text = str(token)
    if _SAFE_STEM.match(text) and text not in (".", ".."):
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:48]
    return f"{readable}-{digest}" if readable else digest
