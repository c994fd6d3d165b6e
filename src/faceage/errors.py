"""Error types: every failure a user can cause has its own class and a one-line message.

The CLI turns any ``FaceageError`` into a single line on stderr and a non-zero exit, so messages
must say what was wrong and with which file, without a traceback.
"""

from __future__ import annotations


class FaceageError(Exception):
    """Base class for errors caused by input or configuration, reported without a traceback."""


class ImageReadError(FaceageError):
    """A file could not be read as an image (missing, unreadable, truncated, not an image)."""


class ImageTooLargeError(ImageReadError):
    """An image exceeds the pixel budget we accept (decompression-bomb guard)."""


class NoFaceError(FaceageError):
    """No face was found where at least one was required."""


class ModelFileError(FaceageError):
    """A bundled or shipped model file is missing or does not match its manifest."""


class DatasetError(FaceageError):
    """A dataset folder is missing or has an unexpected layout."""


class ImageWriteError(FaceageError):
    """An output image could not be written (unknown format, protected input, disk error)."""


class OutputUnwritableError(ImageWriteError):
    """No output can be written at all (disk full, read-only or forbidden folder): a batch stops here
    instead of failing every remaining file the same way."""


class DeviceError(FaceageError):
    """``--device`` names no device, or one this machine does not have (CUDA on a CPU-only build)."""
