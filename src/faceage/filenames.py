"""File names as text that every output can hold: metadata, CSV, JSON and the terminal.

A name on Linux is any bytes but ``/`` and NUL; Python hands undecodable bytes over as lone
surrogates (``os.fsdecode``), which UTF-8, XML and a terminal cannot take, and control characters
(``\\x01``, ``\\x1b[31m``) that XMP cannot store and a terminal would obey. ``escape_name`` writes such
characters as backslash escapes: ``\\xNN`` for a byte of the name (a control character or an
undecodable byte), ``\\uXXXX`` / ``\\UXXXXXXXX`` for any other character that is not printable, and
``\\\\`` for a backslash, so ``unescape_name`` gives the exact name back. ``shown`` is the same
without doubling backslashes, for people (a path on a terminal), not to be read back.
"""

from __future__ import annotations

import os
import re

__all__ = ["escape_name", "shown", "unescape_name"]

_SURROGATE_BYTES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for bytes 0x80..0xFF
_ESCAPE = re.compile(r"\\(?:\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if code in _SURROGATE_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_name(name: str | os.PathLike[str], backslashes: bool = True) -> str:
    """``name`` with every character that is not printable as an escape (see the module doc);
    printable text, accents and scripts included, is left as it is. ``backslashes`` False leaves
    backslashes single (``shown``)."""
    text = os.fspath(name)
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\" if backslashes else "\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(_escape_char(char))
    return "".join(out)


def unescape_name(text: str) -> str:
    """The name ``escape_name`` was given (its escapes undone; any other backslash kept as it is)."""

    def one(match: re.Match[str]) -> str:
        escape = match.group()
        if escape == "\\\\":
            return "\\"
        code = int(escape[2:], 16)
        if escape[1] == "x" and code >= 0x80:
            return chr(0xDC00 + code)  # an undecodable byte, as os.fsdecode gives it
        return chr(code)

    return _ESCAPE.sub(one, text)


def shown(name: str | os.PathLike[str]) -> str:
    """``name`` safe to print: control characters and undecodable bytes escaped, nothing else changed."""
    return escape_name(name, backslashes=False)
