"""Atomic file writes: readers see either the old file or the complete new one, never a torn one.

Every writer goes through a temporary file in the destination folder (same file system, so the
final ``os.replace`` is atomic), named ``.<name>.<random>.tmp`` so it is hidden and easy to spot.
The data is flushed and fsynced before the rename; on any failure, KeyboardInterrupt included,
the temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_write", "default_file_mode", "fsync_dir", "temp_target",
    "write_bytes_atomic", "write_json_atomic", "write_text_atomic",
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
    """Call ``write(f)`` on a binary file that atomically becomes ``path`` once ``write`` returns.

    Parent folders are created. The new file gets the usual ``0o666 & ~umask`` mode (mkstemp's
    0600 is not kept). Exceptions from ``write`` propagate unchanged. Returns ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), default_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text`` (no newline translation)."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, indent: int | None = 2, *, default: Callable[[Any], Any] | None = None
) -> Path:
    """Atomically replace ``path`` with ``obj`` as JSON (``indent``, ``default`` as in json.dumps) plus a newline."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")
