"""Read any photo into RGB uint8; write images atomically.

Reading normalises everything a camera, phone or editor produces into one array type:
EXIF orientation applied, embedded ICC profile converted to sRGB, grayscale / palette / CMYK /
16-bit / float / alpha (composited on white) turned into (H, W, 3) uint8 RGB. Every failure is an
``ImageReadError`` whose message names the file and gives a one-line reason; images with more
pixels than ``max_pixels`` are refused from their header, before any pixel is decoded.

Writing goes through ``faceage.atomic.atomic_write`` (temp file in the folder, fsync, ``os.replace``), so a
crash or a full disk never leaves a half-written image under the final name, and input photos can
be protected from being overwritten by accident.

Metadata is a flat ``{str: str}`` dict. Keys written as ``prefix:Name`` with a prefix of
``XMP_NAMESPACES`` (``xmp:CreatorTool``, ``Iptc4xmpExt:DigitalSourceType``, ``faceage:method``, ...)
also go into a standard XMP packet (JPEG APP1 ``http://ns.adobe.com/xap/1.0/``, PNG iTXt
``XML:com.adobe.xmp``, WebP ``XMP `` chunk), where exiftool, Adobe tools and photo sites read them.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from faceage.atomic import atomic_write, fsync_dir
from faceage.errors import ImageReadError, ImageTooLargeError, ImageWriteError, OutputUnwritableError

# 120 MP: well above any camera (a 100 MP medium-format frame fits), far below what would exhaust
# memory once decoded (120 MP RGB = 360 MB, plus a few working copies).
DEFAULT_MAX_PIXELS = 120_000_000

# Most pixels one byte of a genuine file can describe, per format, from each codec's best case (a flat
# image): JPEG codes at least about one bit per 8x8 block (a few hundred pixels a byte; 4x margin here),
# deflate (PNG, TIFF) at most 1032:1 on 1-bit rows (8256), GIF's LZW a few thousand, BMP's RLE 510.
# A header declaring more pixels than that is corrupt or a decompression bomb (a 631-byte "7000x7000"
# JPEG would be decoded into 147 MB). Applies above a megapixel; formats not listed (lossless WebP can
# describe a flat image in almost nothing) are bounded by the pixel limits alone.
MAX_PIXELS_PER_BYTE = {"JPEG": 2_000, "MPO": 2_000, "PNG": 16_000, "TIFF": 16_000, "GIF": 8_000, "BMP": 1_000}

SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}

# EXIF ImageDescription; where JPEG/WebP outputs keep their metadata (as one JSON object).
_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_ORIENTATION = 0x0112

# XMP namespaces that metadata keys may use as ``prefix:Name``. Only these are written and read back;
# properties of other namespaces in a foreign file are ignored by ``read_metadata``.
XMP_NAMESPACES = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "faceage": "urn:faceage:xmp:1.0:",
}
# Properties whose XMP type is a language alternative (rdf:Alt of rdf:li xml:lang="x-default").
_XMP_LANG_ALT = frozenset({"dc:description", "dc:title", "dc:rights"})
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_PNG_XMP_KEY = "XML:com.adobe.xmp"
_XMP_KEY = re.compile(r"([A-Za-z][A-Za-z0-9]*):([A-Za-z_][A-Za-z0-9_.-]*)\Z")
# characters XML 1.0 cannot hold at all (even escaped)
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

try:  # littlecms is part of Pillow's wheels, but it is an optional feature of Pillow builds.
    from PIL import ImageCms

    _SRGB_PROFILE = ImageCms.createProfile("sRGB")
except (ImportError, OSError):  # pragma: no cover - depends on how Pillow was built
    ImageCms = None  # type: ignore[assignment]
    _SRGB_PROFILE = None  # type: ignore[assignment]


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 of shape (H, W, 3), upright as the camera meant it.

    Raises ``ImageReadError`` (file missing, unreadable, empty, truncated, not an image, unsupported
    pixel format) or ``ImageTooLargeError`` (more than ``max_pixels`` pixels, checked on the header
    before decoding; Pillow's own bomb guard also refuses anything above 2 x
    ``PIL.Image.MAX_IMAGE_PIXELS``, 179 MP by default). Multi-frame files (GIF, TIFF) give their
    first frame.
    """
    path = Path(path)
    name = path.name or str(path)
    try:
        with open_regular(path) as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageReadError(f"{name}: file is empty")
            return _decode(fp, name, max_pixels)
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found ({path})") from None
    except IsADirectoryError:
        raise ImageReadError(f"{name}: is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied") from None
    except OSError as exc:  # I/O errors of the file itself (not decoding, handled in _decode)
        raise ImageReadError(f"{name}: cannot read file ({exc.strerror or exc})") from None


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file; ``ImageReadError`` for a FIFO, device or
    socket (opened without blocking: a FIFO with no writer would otherwise hang the caller forever)."""
    import stat

    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            raise ImageReadError(
                f"{path.name or path}: not a regular file (a pipe, device or socket); refusing to read it"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def decode_image_bytes(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Same as ``load_image`` for an image held in memory (an upload); ``name`` is used in errors."""
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def image_header(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, format) of an image held in memory, from its header alone (nothing decoded).

    Raises like ``decode_image_bytes`` for what the header shows: not an image, a corrupt header, more
    than ``max_pixels`` pixels (``ImageTooLargeError``), or more pixels than the file's bytes could
    genuinely describe (``ImageReadError``: corrupt, or a decompression bomb).
    """
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    with _open_image(io.BytesIO(data), name) as im, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_header(im, name, max_pixels, len(data))
        return im.size[0], im.size[1], str(im.format)


def _open_image(fp: BinaryIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own bomb limit (89 MP; ours is max_pixels, checked by the caller)
            # and about corrupt parts (EXIF): the file is decoded or refused with one line either way.
            warnings.simplefilter("ignore")
            return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image, or a format that cannot be read") from None
    except Exception as exc:  # noqa: BLE001 - format plugins raise anything on a corrupt header (struct.error, IndexError, ...)
        raise ImageReadError(f"{name}: corrupt image header ({_one_line(exc)})") from None


def _check_header(im: Image.Image, name: str, max_pixels: int, size: int | None) -> None:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of {max_pixels / 1e6:.1f} MP"
        )
    per_byte = MAX_PIXELS_PER_BYTE.get(str(im.format))
    if per_byte and size and width * height > 1_000_000 and width * height > per_byte * size:
        raise ImageReadError(
            f"{name}: the header declares {width}x{height} pixels but the file has only {size} bytes; "
            "corrupt (or a decompression bomb), not decoded"
        )


def _decode(fp: BinaryIO, name: str, max_pixels: int) -> np.ndarray:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Something in the process switched Pillow to silently grey-fill truncated files; we would
        # hand half-decoded photos downstream without noticing.
        raise ImageReadError(
            f"{name}: refusing to read while PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on "
            "(truncated files could not be detected)"
        )
    im = _open_image(fp, name)
    with im, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # corrupt parts are decoded or refused, never two more lines
        _check_header(im, name, max_pixels, _stream_size(fp))
        try:
            im.load()  # full decode now: a truncated file raises here instead of giving grey rows
        except MemoryError:
            raise ImageReadError(f"{name}: not enough memory to decode it (corrupt, or too large)") from None
        except Exception as exc:  # noqa: BLE001 - decoders of corrupt data raise anything (IndexError from QOI, ...)
            reason = _one_line(exc)
            if "truncated" in reason or isinstance(exc, EOFError):
                raise ImageReadError(f"{name}: file is truncated (incomplete download or copy?)") from None
            raise ImageReadError(f"{name}: corrupt image data ({reason})") from None
        try:
            rgb = _to_rgb(_apply_orientation(im))
        except ValueError as exc:
            raise ImageReadError(f"{name}: {exc}") from None
    return rgb


def _stream_size(fp: BinaryIO) -> int | None:
    """Bytes in a file or BytesIO (None when unknown)."""
    if isinstance(fp, io.BytesIO):
        return len(fp.getbuffer())
    try:
        return os.fstat(fp.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _apply_orientation(im: Image.Image) -> Image.Image:
    try:
        if im.getexif().get(_EXIF_ORIENTATION, 1) in (0, 1):
            return im  # upright already; exif_transpose would still copy the whole image
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not make a valid photo unreadable
        return im


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any decoded Pillow image to C-contiguous RGB uint8."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(im)
        if mode == "I" and (gray.min() < 0 or gray.max() > 65535):
            gray = _stretch(gray.astype(np.float64))
        else:  # 16-bit range: map 0..65535 onto 0..255 (65535 / 257 = 255), rounding
            gray = ((gray.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return _gray_to_rgb(gray)
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if not np.isfinite(values).all():
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:  # normalised float, the usual convention
            gray = np.rint(values * 255.0).astype(np.uint8)
        elif lo >= 0.0 and hi <= 255.0:
            gray = np.rint(values).astype(np.uint8)
        else:
            gray = _stretch(values)
        return _gray_to_rgb(gray)

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        im = _composite_on_white(im)
    elif mode == "1":
        im = im.convert("L")
    im = _to_srgb(im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8, order="C")


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint((values - lo) * scale).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")  # palettes and tRNS transparency become a real alpha channel here
    rgba = _to_srgb(rgba)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _to_srgb(im: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (Display P3 phone photos, CMYK print files) to reach sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or ImageCms is None or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(im, source, _SRGB_PROFILE, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken or mismatched profile: fall back to the plain conversion
    return converted if converted is not None else im


def save_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    metadata: Mapping[str, str] | None = None,
    quality: int = 95,
    protect: Iterable[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write an RGB uint8 image atomically; the format follows the suffix (.jpg/.jpeg/.png/.webp).

    ``metadata`` is stored as PNG text chunks (every key), and keys named ``prefix:Name`` with a prefix
    of ``XMP_NAMESPACES`` also as an XMP packet (PNG, JPEG, WebP); in JPEG and WebP the other keys go
    into EXIF ImageDescription as one JSON object. ``read_metadata`` reads all of it back. Raises
    ValueError for such an XMP key whose name or value XML cannot hold. ``protect`` is a collection of paths (the
    inputs) that must never be overwritten: writing onto one raises ``ImageWriteError``. The missing
    parent folders are created. Returns the path written.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(
            f"{path.name}: cannot choose an image format from the suffix '{path.suffix}'; "
            f"use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    rgb = check_rgb(rgb)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if protect and _is_protected(path, protect):
        raise ImageWriteError(f"{path.name}: refusing to overwrite an input image ({path}); choose another output path")
    if path.is_dir():
        raise ImageWriteError(f"{path.name}: output path is a folder")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    xmp_meta = {key: value for key, value in meta.items() if _is_xmp_key(key)}
    xmp = _xmp_packet(xmp_meta) if xmp_meta else None

    options: dict[str, object] = {}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in meta.items():
            info.add_text(key, value)  # latin-1 → tEXt; anything else → iTXt (UTF-8)
        if xmp is not None:  # the XMP spec's PNG form: uncompressed iTXt, empty language
            info.add_itxt(_PNG_XMP_KEY, xmp.decode("utf-8"), zip=False)
        options.update(pnginfo=info, compress_level=6)
    else:
        if xmp is not None:
            options["xmp"] = xmp
        meta = {key: value for key, value in meta.items() if key not in xmp_meta}
        options["quality"] = int(quality)
        if fmt == "JPEG":
            # no chroma subsampling at high quality: faces have fine colour edges (lips, eyes)
            options["subsampling"] = 0 if quality >= 90 else 2
        else:
            options["method"] = 4
        if meta:
            exif = Image.Exif()
            exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(meta, ensure_ascii=True, sort_keys=True)
            options["exif"] = exif.tobytes()

    try:
        atomic_write(path, lambda fp: Image.fromarray(rgb, mode="RGB").save(fp, format=fmt, **options))
        fsync_dir(path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path


# errors after which no other output can be written either: the folder or the disk is the problem
_FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def write_error(path: str | os.PathLike[str], exc: OSError) -> ImageWriteError:
    """The one-line ``ImageWriteError`` for a failed write of ``path``; ``OutputUnwritableError`` when
    every other write would fail the same way (no space, read-only or forbidden folder)."""
    reason = exc.strerror or _one_line(exc)
    if exc.errno in _FATAL_WRITE_ERRNOS:
        return OutputUnwritableError(f"cannot write {path} ({reason})")
    return ImageWriteError(f"{Path(path).name}: cannot write the output ({reason})")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata dict that ``save_image`` stored in a PNG, JPEG or WebP file ({} if none).

    Also reads the properties of ``XMP_NAMESPACES`` from any file's XMP packet, and a GIF comment
    holding a JSON object (what ``faceage.outputs.progression.save_gif`` writes). Raises
    ``ImageReadError`` for a file Pillow cannot open.
    """
    path = Path(path)
    try:
        with open_regular(path) as fp, _bomb_warnings_off(), Image.open(fp) as im:
            xmp = im.info.get("xmp")
            if im.format == "PNG":
                own = {str(k): str(v) for k, v in getattr(im, "text", {}).items() if k != _PNG_XMP_KEY}
            elif im.format == "GIF":
                own = _json_dict(im.info.get("comment"))
            else:
                own = _json_dict(im.getexif().get(_EXIF_IMAGE_DESCRIPTION))
    except FileNotFoundError:
        raise ImageReadError(f"{path.name}: file not found ({path})") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path.name}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path.name}: not an image, or a format that cannot be read") from None
    except PermissionError:
        raise ImageReadError(f"{path.name}: permission denied") from None
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{path.name}: the header declares a size far beyond any photo (corrupt, or a decompression bomb); not read"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path.name}: cannot read metadata ({_one_line(exc)})") from None
    meta = _parse_xmp(xmp) if xmp else {}
    meta.update(own)
    return meta


def _bomb_warnings_off():
    """Reading metadata decodes no pixels, so a huge declared size is no reason to warn."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    return stack


def _json_dict(text: str | bytes | None) -> dict[str, str]:
    """A JSON object's items as strings; {} for anything else (a foreign description or comment)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (TypeError, ValueError):  # UnicodeDecodeError is a ValueError
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _is_xmp_key(key: str) -> bool:
    prefix, colon, _name = key.partition(":")
    if not colon or prefix not in XMP_NAMESPACES:
        return False
    if not _XMP_KEY.match(key):
        raise ValueError(
            f"metadata key {key!r}: not a valid XMP property name (letters, digits, _ . - after '{prefix}:')"
        )
    return True


def _xmp_packet(props: Mapping[str, str]) -> bytes:
    """A complete XMP packet holding ``props`` (keys ``prefix:Name``) as simple or x-default text."""
    from xml.sax.saxutils import escape

    lines = []
    for key, value in props.items():
        bad = _NOT_XML_CHAR.search(value)
        if bad:
            raise ValueError(f"metadata {key}: character {bad.group()!r} cannot be stored in XMP")
        text = escape(value, {"\r": "&#13;"})  # a raw CR would be read back as LF
        if key in _XMP_LANG_ALT:
            text = f'<rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt>'
        lines.append(f"   <{key}>{text}</{key}>")
    prefixes = sorted({key.partition(":")[0] for key in props})
    xmlns = "".join(f'\n    xmlns:{prefix}="{XMP_NAMESPACES[prefix]}"' for prefix in prefixes)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f' <rdf:RDF xmlns:rdf="{_RDF}">\n'
        f'  <rdf:Description rdf:about=""{xmlns}>\n' + "\n".join(lines) + "\n"
        "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode("utf-8")


def _parse_xmp(packet: str | bytes) -> dict[str, str]:
    """The simple and x-default text properties of ``XMP_NAMESPACES`` in an XMP packet ({} if unparsable)."""
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    packet = packet.strip(b"\x00 \t\r\n")
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", packet, re.IGNORECASE):
        return {}  # XMP never declares entities; refusing them rules out entity-expansion bombs
    try:
        root = ET.fromstring(packet)
    except ET.ParseError:
        return {}
    prefix_of = {uri: prefix for prefix, uri in XMP_NAMESPACES.items()}

    def key_of(tag: str) -> str | None:
        uri, brace, name = tag[1:].partition("}")
        return f"{prefix_of[uri]}:{name}" if tag.startswith("{") and brace and uri in prefix_of else None

    meta: dict[str, str] = {}
    for description in root.iter(f"{{{_RDF}}}Description"):
        for attr, value in description.attrib.items():  # the short form: properties as attributes
            if (key := key_of(attr)) is not None:
                meta[key] = value
        for child in description:
            if (key := key_of(child.tag)) is None:
                continue
            if len(child) == 0:
                meta[key] = child.text or ""
            elif child[0].tag in (f"{{{_RDF}}}Alt", f"{{{_RDF}}}Seq", f"{{{_RDF}}}Bag"):
                items = list(child[0])
                if child[0].tag == f"{{{_RDF}}}Alt":  # one language: x-default, else the first
                    items = [li for li in items if li.get(_XML_LANG) == "x-default"][:1] or items[:1]
                meta[key] = ", ".join(li.text or "" for li in items)
    return meta


def check_rgb(rgb: object, what: str = "image") -> np.ndarray:
    """Return ``rgb`` as a C-contiguous (H, W, 3) uint8 array, or raise ValueError saying what it got."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what}: image has no pixels, shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _is_protected(path: Path, protect: Iterable[str | os.PathLike[str]]) -> bool:
    target = os.path.realpath(path)
    for other in protect:
        if os.path.realpath(other) == target:
            return True
        try:  # hard links and other aliases of the same file
            if path.exists() and os.path.samefile(path, other):
                return True
        except OSError:
            continue
    return False
