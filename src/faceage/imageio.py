"""Read any photo into RGB uint8; write images atomically.

Reading normalises everything a camera, phone or editor produces into one array type:
EXIF orientation applied, embedded ICC profile converted to sRGB, grayscale / palette / CMYK /
16-bit / float / alpha (composited on white) turned into (H, W, 3) uint8 RGB. Every failure is an
``ImageReadError`` whose message names the file and gives a one-line reason; images with more
pixels than ``max_pixels`` are refused from their header, before any pixel is decoded.

Writing goes through ``faceage.atomic.atomic_write`` (temp file in the folder, fsync, ``os.replace``), so a
crash or a full disk never leaves a half-written image under the final name, and input photos can
be protected from being overwritten by accident.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from faceage.atomic import atomic_write, fsync_dir
from faceage.errors import ImageReadError, ImageTooLargeError, ImageWriteError

# 120 MP: well above any camera (a 100 MP medium-format frame fits), far below what would exhaust
# memory once decoded (120 MP RGB = 360 MB, plus a few working copies).
DEFAULT_MAX_PIXELS = 120_000_000

SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}

# EXIF ImageDescription; where JPEG/WebP outputs keep their metadata (as one JSON object).
_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_ORIENTATION = 0x0112

try:  # littlecms is part of Pillow's wheels, but it is an optional feature of Pillow builds.
    from PIL import ImageCms

    _SRGB_PROFILE = ImageCms.createProfile("sRGB")
except (ImportError, OSError):  # pragma: no cover - depends on how Pillow was built
    ImageCms = None
    _SRGB_PROFILE = None


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
        with open(path, "rb") as fp:
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


def decode_image_bytes(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Same as ``load_image`` for an image held in memory (an upload); ``name`` is used in errors."""
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(fp: BinaryIO, name: str, max_pixels: int) -> np.ndarray:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Something in the process switched Pillow to silently grey-fill truncated files; we would
        # hand half-decoded photos downstream without noticing.
        raise ImageReadError(
            f"{name}: refusing to read while PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on "
            "(truncated files could not be detected)"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own bomb limit (89 MP); ours is max_pixels, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image, or a format that cannot be read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{name}: corrupt image header ({_one_line(exc)})") from None

    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageReadError(f"{name}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"{name}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of "
                f"{max_pixels / 1e6:.1f} MP"
            )
        try:
            im.load()  # full decode now: a truncated file raises here instead of giving grey rows
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            reason = _one_line(exc)
            if "truncated" in reason or isinstance(exc, EOFError):
                raise ImageReadError(f"{name}: file is truncated (incomplete download or copy?)") from None
            raise ImageReadError(f"{name}: corrupt image data ({reason})") from None
        try:
            rgb = _to_rgb(_apply_orientation(im))
        except ValueError as exc:
            raise ImageReadError(f"{name}: {exc}") from None
    return rgb


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

    ``metadata`` is stored as PNG text chunks, or as one JSON object in EXIF ImageDescription for
    JPEG and WebP (``read_metadata`` reads either back). ``protect`` is a collection of paths (the
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

    options: dict[str, object] = {}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in meta.items():
            info.add_text(key, value)  # latin-1 → tEXt; anything else → iTXt (UTF-8)
        options.update(pnginfo=info, compress_level=6)
    else:
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

    atomic_write(path, lambda fp: Image.fromarray(rgb, mode="RGB").save(fp, format=fmt, **options))
    fsync_dir(path.parent)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata dict that ``save_image`` stored in a PNG, JPEG or WebP file ({} if none)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                return {str(k): str(v) for k, v in getattr(im, "text", {}).items()}
            description = im.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageReadError(f"{path.name}: cannot read metadata ({_one_line(exc)})") from None
    if not description:
        return {}
    try:
        data = json.loads(description)
    except (TypeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def check_rgb(rgb: np.ndarray, what: str = "image") -> np.ndarray:
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
