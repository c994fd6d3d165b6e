"""faceage.imageio: every kind of photo in, RGB uint8 out; clear errors; atomic, protected writes."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from faceage.errors import ImageReadError, ImageTooLargeError, ImageWriteError
from faceage.imageio import decode_image_bytes, load_image, read_metadata, save_image


def _assert_rgb(arr: np.ndarray, shape: tuple[int, int]) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape, 3)
    assert arr.flags.c_contiguous and arr.flags.writeable


@pytest.fixture()
def gradient() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


# ----------------------------------------------------------------------------- reading


def test_astronaut_jpeg_and_png_round_trip(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    Image.fromarray(astronaut).save(tmp_path / "a.jpg", quality=95)
    png = load_image(tmp_path / "a.png")
    _assert_rgb(png, (512, 512))
    assert np.array_equal(png, astronaut)
    jpg = load_image(str(tmp_path / "a.jpg"))
    _assert_rgb(jpg, (512, 512))
    assert np.abs(jpg.astype(int) - astronaut).mean() < 3


def test_real_dataset_photo(shared_datasets: Path) -> None:
    path = sorted((shared_datasets / "utkface" / "images").glob("30_*.jpg"))[0]
    _assert_rgb(load_image(path), (200, 200))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is not a picture\n" * 10, "not an image"),
    ],
)
def test_non_images_are_rejected_with_the_file_name(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        load_image(path)
    assert "holiday.jpg" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nope.jpg: file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_rejected(tmp_path: Path, astronaut: np.ndarray, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="cut") as info:
        load_image(path)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_grayscale_becomes_three_equal_channels(tmp_path: Path, gradient: np.ndarray) -> None:
    gray = gradient[:, :, 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    _assert_rgb(out, gray.shape)
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))


def test_one_bit_image(tmp_path: Path) -> None:
    Image.fromarray(np.eye(16, dtype=bool)).save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    _assert_rgb(out, (16, 16))
    assert set(np.unique(out)) == {0, 255}


def test_cmyk_jpeg(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    out = load_image(tmp_path / "print.jpg")
    _assert_rgb(out, (512, 512))
    assert np.abs(out.astype(int) - astronaut).mean() < 6


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = load_image(tmp_path / "g16.png")
    _assert_rgb(out, (32, 64))
    assert np.abs(out[:, :, 0].astype(float) - values / 257.0).max() <= 0.5
    assert out.min() == 0 and out.max() == 255


def test_16_bit_rgb_png_and_tiff_are_scaled(tmp_path: Path, gradient: np.ndarray) -> None:
    rgb16 = gradient.astype(np.uint16) * 257 + 100  # low bytes carry detail that clipping would mangle
    for name in ("c16.png", "c16.tif"):
        cv2.imwrite(str(tmp_path / name), rgb16[:, :, ::-1])
        out = load_image(tmp_path / name)
        _assert_rgb(out, gradient.shape[:2])
        assert np.abs(out.astype(float) - rgb16 / 257.0).max() < 1.0


def test_float_tiff(tmp_path: Path) -> None:
    values = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")
    _assert_rgb(out, (32, 32))
    assert np.abs(out[:, :, 1].astype(float) - values * 255).max() <= 0.5


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 12, 4), np.uint8)
    rgba[:, :, 0] = 200
    rgba[:, :4, 3] = 0  # transparent → white
    rgba[:, 4:8, 3] = 255  # opaque → its own colour
    rgba[:, 8:, 3] = 128  # half → halfway to white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    _assert_rgb(out, (8, 12))
    assert (out[:, :4] == 255).all()
    assert (out[:, 4:8] == [200, 0, 0]).all()
    assert np.allclose(out[:, 8:].astype(int), [228, 127, 127], atol=1)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    img.info["transparency"] = 0  # palette entry 0 (red) is transparent
    img.save(tmp_path / "p.png", transparency=0)
    gif = img.copy()
    gif.save(tmp_path / "p.gif", transparency=0)
    for name in ("p.png", "p.gif"):
        out = load_image(tmp_path / name)
        _assert_rgb(out, (10, 10))
        assert (out[:, :5] == [0, 0, 255]).all()
        assert (out[:, 5:] == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # stored landscape 60x30 with a red block top-left; EXIF 6 = "rotate 90° clockwise to view"
    stored = np.full((30, 60, 3), 255, np.uint8)
    stored[:10, :10] = [255, 0, 0]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "phone.jpg")
    _assert_rgb(out, (60, 30))  # now portrait
    # the stored top-left corner ends up top-right after a clockwise turn
    assert out[2:8, -8:-2, 0].mean() > 200 and out[2:8, -8:-2, 1].mean() < 60
    assert out[2:8, 2:8].min() > 200


def test_huge_pixel_count_rejected_from_the_header(tmp_path: Path) -> None:
    for width, height in [(12_000, 11_000), (100_000, 100_000)]:  # 132 MP and a 10 GP bomb
        path = tmp_path / f"bomb_{width}.png"
        path.write_bytes(_png_with_size(width, height))
        with pytest.raises(ImageTooLargeError, match=f"bomb_{width}.png"):
            load_image(path)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    with pytest.raises(ImageTooLargeError, match="exceeds"):
        load_image(small, max_pixels=5_000)


def test_large_camera_photo_loads(tmp_path: Path) -> None:
    big = np.zeros((6000, 8000, 3), np.uint8)
    big[::97] = 180
    Image.fromarray(big).save(tmp_path / "camera.jpg", quality=80)
    out = load_image(tmp_path / "camera.jpg")
    _assert_rgb(out, (6000, 8000))


def test_decode_image_bytes_behaves_like_load_image(astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    data = buf.getvalue()
    assert np.array_equal(decode_image_bytes(data, "upload.png"), astronaut)
    with pytest.raises(ImageReadError, match="upload.png"):
        decode_image_bytes(data[:2000], "upload.png")
    with pytest.raises(ImageReadError, match="empty"):
        decode_image_bytes(b"", "upload.png")
    with pytest.raises(ImageReadError, match="not an image"):
        decode_image_bytes(b"%PDF-1.4 not a photo", "doc.pdf")
    with pytest.raises(ImageTooLargeError):
        decode_image_bytes(_png_with_size(20_000, 20_000), "bomb.png")


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp"])
def test_save_formats_and_metadata(tmp_path: Path, astronaut: np.ndarray, suffix: str) -> None:
    meta = {"source_age": "34", "method": "gls", "note": "Zoë, 70 → 20"}
    path = save_image(tmp_path / f"out{suffix}", astronaut, metadata=meta)
    assert path == tmp_path / f"out{suffix}"
    back = load_image(path)
    _assert_rgb(back, (512, 512))
    tolerance = 0 if suffix == ".png" else 4
    assert np.abs(back.astype(int) - astronaut).mean() <= tolerance
    assert read_metadata(path) == meta
    if suffix == ".png":
        assert Image.open(path).text == meta  # plain PNG text chunks
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no temp files left


def test_save_creates_folders_and_gives_normal_permissions(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = save_image(tmp_path / "a" / "b" / "x.png", astronaut)
    assert path.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_refuses_to_overwrite_protected_input(tmp_path: Path, astronaut: np.ndarray) -> None:
    original = tmp_path / "input.png"
    Image.fromarray(astronaut).save(original)
    before = original.read_bytes()
    blank = np.zeros_like(astronaut)
    aliases = [original, tmp_path / "sub" / ".." / "input.png"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(original)
    os.link(original, tmp_path / "hard.png")
    for alias in [*aliases, tmp_path / "link.png", tmp_path / "hard.png"]:
        with pytest.raises(ImageWriteError, match="refusing to overwrite"):
            save_image(alias, blank, protect={str(original)})
    assert original.read_bytes() == before
    # anything else may be overwritten
    save_image(tmp_path / "other.png", blank, protect={original})
    save_image(tmp_path / "other.png", astronaut, protect={original})
    assert np.array_equal(load_image(tmp_path / "other.png"), astronaut)


def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result.png"
    save_image(target, astronaut)
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202
        fp.write(b"half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError, match="No space"):
        save_image(target, np.zeros_like(astronaut))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]


def test_save_rejects_bad_input(tmp_path: Path, astronaut: np.ndarray) -> None:
    with pytest.raises(ImageWriteError, match="suffix"):
        save_image(tmp_path / "x.bmpx", astronaut)
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "x.png", astronaut.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "x.png", astronaut[:, :, 0])
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nobody writes: a plain open() would block forever
    with pytest.raises(ImageReadError, match="photo.jpg: not a regular file"):
        load_image(fifo)
