"""Files that are never half-written and that get the user's permissions.

:func:`atomic_write` writes into a temporary file in the destination's folder, flushes and
fsyncs it, gives it the mode a plain ``open(path, "w")`` would (``0o666`` less the umask;
``tempfile.mkstemp`` alone leaves ``0o600``), then ``os.replace``-s it over the final name.
A reader, or a run that is killed in the middle, sees the old file or the new one, never a
part. Every file lidarcl writes for users (info indexes, superpixel maps, region caches,
checkpoints, exported backbones) goes through it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading

__all__ = ["atomic_write", "atomic_write_bytes", "current_umask", "default_file_mode"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:  # portable fallback: set and restore
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode of a new regular file under the current umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs):
    """Context manager yielding a file object; on success the file replaces ``path``.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` is left as it was. The folder is created when missing.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)[:40]}.",
                               suffix=".part")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
