"""Atomic file writes: readers see either the old file or the complete new one, never a torn one.

Every writer goes through a temporary file in the destination folder (same file system, so the
final ``os.replace`` is atomic), named ``.<name>.<random>.tmp`` so it is hidden and easy to spot.
The content is first produced in memory, then written with every byte counted (an encoder writing
straight to a file descriptor can lose a short write on a nearly full disk and report success), the
file's size checked, fsynced, and only then renamed; on any failure, KeyboardInterrupt included, the
temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_write",
    "default_file_mode",
    "fsync_dir",
    "temp_target",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Best-effort fsync of a folder, so a rename inside it survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def temp_target(name: str) -> str | None:
    """The destination name of an ``atomic_write`` temp file name (one left by a killed process), else None."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    target, dot, _random = name[1:-4].rpartition(".")
    return target if dot and target else None


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on an in-memory binary buffer whose content atomically becomes ``path``.

    Parent folders are created. The new file gets the usual ``0o666 & ~umask`` mode (mkstemp's
    0600 is not kept). Exceptions from ``write`` propagate unchanged; a disk error (full disk,
    read-only folder, a short write) raises OSError and leaves nothing behind. Returns ``path``.
    """
    buffer = io.BytesIO()
    write(buffer)
    return write_bytes_atomic(path, buffer.getbuffer())


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Atomically replace ``path`` with ``data``: complete or not there at all (see the module doc)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    view = memoryview(data).cast("B")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, view)
            size = os.fstat(fd).st_size
            if size != len(view):
                raise OSError(errno.EIO, f"wrote {size} of {len(view)} bytes")
            os.fchmod(fd, default_file_mode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_all(fd: int, view: memoryview) -> None:
    """``os.write`` until every byte is written; a write that makes no progress is an error."""
    done = 0
    while done < len(view):
        n = os.write(fd, view[done : done + (1 << 24)])
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text`` (no newline translation)."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, indent: int | None = 2, *, default: Callable[[Any], Any] | None = None
) -> Path:
    """Atomically replace ``path`` with ``obj`` as JSON (``indent``, ``default`` as in json.dumps) plus a newline."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")
