"""The image reader on mutated real files (truncations, bit flips, header edits, inserted and deleted
bytes): it returns an RGB image or raises faceage's own ImageReadError, never another exception,
and never hangs (an alarm fails any read that takes minutes)."""

from __future__ import annotations

import contextlib
import functools
import io
import signal
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from faceage.assets import EXAMPLE_PHOTO
from faceage.errors import ImageReadError
from faceage.imageio import decode_image_bytes, image_header, load_image

# (format, Pillow save options) of each seed: every format a folder scan takes that Pillow writes
SEED_FORMATS = {
    "jpeg": ("JPEG", {"quality": 80}),
    "jpeg-progressive": ("JPEG", {"quality": 80, "progressive": True}),
    "png": ("PNG", {}),
    "png-palette": ("PNG", {"palette": True}),
    "gif": ("GIF", {}),
    "bmp": ("BMP", {}),
    "tiff-lzw": ("TIFF", {"compression": "tiff_lzw"}),
    "tiff-deflate": ("TIFF", {"compression": "tiff_adobe_deflate"}),
    "webp-lossy": ("WEBP", {"quality": 70}),
    "webp-lossless": ("WEBP", {"lossless": True}),
    "avif": ("AVIF", {"quality": 60}),
    "ico": ("ICO", {}),
    "ppm": ("PPM", {}),
    "tga-rle": ("TGA", {"compression": "tga_rle"}),
    "pcx": ("PCX", {}),
    "qoi": ("QOI", {}),
}
# decoded pixels allowed per read: well above the seeds (40x48), small enough that a header edit
# declaring a huge image is refused or decoded quickly
MAX_PIXELS = 4_000_000


@functools.cache
def seeds() -> dict[str, bytes]:
    photo = Image.open(EXAMPLE_PHOTO).convert("RGB").resize((40, 48))
    out = {}
    for name, (fmt, options) in SEED_FORMATS.items():
        image = photo.quantize(64) if options.pop("palette", False) else photo
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt, **options)
        except (KeyError, OSError, ValueError):  # this Pillow build does not write it
            continue
        out[name] = buffer.getvalue()
    return out


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "header", "number", "delete", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "header" and data:  # the first bytes: magic, sizes, offsets, flags
            data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(st.integers(0, 255))
        elif kind == "number":  # a size or offset field made huge, zero or negative
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            width = draw(st.sampled_from([2, 4]))
            spot = draw(st.integers(0, min(len(data), 96)))
            data[spot : spot + width] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))[:width]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


@contextlib.contextmanager
def alarm(seconds: int):
    """Fail a read that hangs instead of hanging the test run."""

    def ring(signum, frame):
        raise TimeoutError(f"reading took over {seconds} s")

    before = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def check_read(read) -> None:
    """``read()`` gives an RGB image or raises ImageReadError (one line), and prints no warning (a
    Python warning is two more lines on a user's terminal beside faceage's one)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with alarm(120):
                rgb = read()
        except ImageReadError as error:
            assert str(error) and "\n" not in str(error)
            rgb = None
    assert [str(w.message) for w in caught] == []
    if rgb is None:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 0 < rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS


def test_every_seed_reads_intact():
    assert {"jpeg", "png", "gif", "bmp", "webp-lossy", "ppm", "pcx"} <= set(seeds())
    for name, data in seeds().items():
        rgb = decode_image_bytes(data, name)
        # an icon holds its own square sizes, the photo fitted inside the largest
        assert rgb.shape == (48, 40, 3) or (name == "ico" and rgb.shape[2] == 3), name


@given(mutated())
def test_mutated_files_read_or_raise_image_read_error(data):
    check_read(lambda: decode_image_bytes(data, "fuzzed", max_pixels=MAX_PIXELS))


@given(mutated())
def test_mutated_headers_read_or_raise_image_read_error(data):
    def header():
        width, height, _ = image_header(data, "fuzzed", max_pixels=MAX_PIXELS)
        return np.zeros((min(height, 1), min(width, 1), 3), np.uint8)

    check_read(header)


@given(mutated(), st.sampled_from([".jpg", ".png", ".bin", ""]))
def test_mutated_files_on_disk_read_or_raise_image_read_error(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        check_read(lambda: load_image(path, max_pixels=MAX_PIXELS))
