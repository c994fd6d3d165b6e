"""One face (or photo) at several ages: a labelled strip, an animated GIF, an MP4.

Inputs are RGB uint8 (H, W, 3) arrays, one per age, with an optional label each ("34 (photo)",
"60"). Labels are drawn with OpenCV's built-in Hershey font (no font files), in a dark bar under
each picture; the font has ASCII only, so other characters are drawn as "?".

Provenance: the strip is an array, saved with ``faceage.imageio.save_image(path, strip, metadata=...)``
(PNG text + XMP, JPEG XMP); ``save_gif`` puts ``metadata`` in the GIF comment extension as JSON;
``save_mp4`` writes none, because OpenCV's video writer cannot set container metadata.
Every file is written atomically: a temp file in the destination folder, renamed on success.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceage.atomic import atomic_write, fsync_dir
from faceage.errors import ImageWriteError
from faceage.imageio import check_rgb, write_error

# The strip's default height is the smallest input's, capped here so six 12 MP photos do not make a
# 24000-pixel-wide strip nobody can open.
DEFAULT_STRIP_MAX_HEIGHT = 1024
# MP4: "mp4v" (MPEG-4 Part 2) is the one MP4 encoder in opencv-python-headless's FFmpeg (no H.264, AV1).
MP4_FOURCC = "mp4v"

_BAR_RGB = (24, 24, 24)
_TEXT_RGB = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_DUPLEX


def progression_strip(images: Sequence[np.ndarray], labels: Sequence[str], height: int | None = None) -> np.ndarray:
    """Put ``images`` side by side at one height, each with its label in a bar underneath.

    Args:
        images: RGB uint8 (H, W, 3) arrays, any sizes; each keeps its aspect ratio.
        labels: one string per image ("" for none).
        height: height of the pictures in pixels (at least 16); None: the smallest input height, at
            most ``DEFAULT_STRIP_MAX_HEIGHT``.

    Returns RGB uint8 of shape (height + bar, sum of widths + gaps, 3). Raises ValueError for no
    images, a label count that differs, or an image that is not (H, W, 3) uint8.
    """
    images = _check_frames(images, "images")
    labels = _check_labels(labels, len(images))
    if height is None:
        height = min(DEFAULT_STRIP_MAX_HEIGHT, min(image.shape[0] for image in images))
    elif not _int_in(height, 16):
        raise ValueError(f"height: expected an int of at least 16 pixels or None, got {height!r}")
    height = int(height)
    bar = _bar_height(height)
    gap = np.full((height + bar, max(2, height // 100), 3), _BAR_RGB, np.uint8)
    columns = []
    for index, (image, label) in enumerate(zip(images, labels)):
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        tile = _resize(image, width, height)
        if index:
            columns.append(gap)
        columns.append(np.vstack([tile, _label_bar(width, bar, label)]))
    return np.ascontiguousarray(np.hstack(columns))


def save_gif(
    path: str | os.PathLike[str],
    frames: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    ms_per_frame: int = 600,
    loop: bool = True,
    max_side: int | None = 512,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``frames`` as an animated GIF, atomically; returns the path.

    Frames are fitted into one size (the smallest frame height, centred on a dark background when
    aspect ratios differ), labelled when ``labels`` is given, shrunk so that no side exceeds
    ``max_side`` (None: no limit), and share one 256-colour palette computed over all of them
    (no flicker between frames), Floyd-Steinberg dithered. ``ms_per_frame`` is the display time of
    each frame (GIF stores it in 10 ms steps); ``loop`` repeats forever, else it plays once.
    ``metadata`` (e.g. ``provenance_metadata(...)``) goes into the GIF comment as a JSON object,
    which ``faceage.imageio.read_metadata`` reads back. Consecutive identical frames are merged by
    Pillow into one longer frame.

    Raises ValueError for bad arguments, ``ImageWriteError`` when the suffix is not .gif.
    """
    path = _check_path(path, ".gif")
    if not _int_in(ms_per_frame, 20, 655_350):
        raise ValueError(f"ms_per_frame: expected an int in 20..655350 ms, got {ms_per_frame!r}")
    pictures = _animation_frames(frames, labels, max_side)
    # one palette for all frames, from a subsampled mosaic of them (median cut keeps skin tones apart)
    mosaic = Image.fromarray(np.ascontiguousarray(np.vstack([p[::2, ::2] for p in pictures])))
    palette = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    paletted = [Image.fromarray(p).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for p in pictures]
    options: dict[str, object] = {"save_all": True, "append_images": paletted[1:], "duration": int(ms_per_frame)}
    if loop:
        options["loop"] = 0  # NETSCAPE extension: repeat forever; without it viewers play once
    if metadata:
        options["comment"] = json.dumps({str(k): str(v) for k, v in metadata.items()}, sort_keys=True)
    try:
        atomic_write(path, lambda fp: paletted[0].save(fp, format="GIF", **options))
    except OSError as exc:
        raise write_error(path, exc) from None
    fsync_dir(path.parent)
    return path


def save_mp4(
    path: str | os.PathLike[str],
    frames: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    fps: float = 2.0,
    max_side: int | None = 1280,
) -> Path:
    """Write ``frames`` as an MP4 video (OpenCV, MPEG-4 Part 2 "mp4v"), atomically; returns the path.

    Frames are fitted and labelled as in ``save_gif``, padded to even sides, and shown ``fps`` per
    second. The file carries no provenance metadata (OpenCV cannot write any). "mp4v" plays in VLC,
    QuickTime and most desktop players, not in web browsers (they need H.264, which
    opencv-python-headless does not ship).

    Raises ValueError for bad arguments, ``ImageWriteError`` when the suffix is not .mp4 or OpenCV
    cannot write the video.
    """
    path = _check_path(path, ".mp4")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not 0 < fps <= 120:
        raise ValueError(f"fps: expected a number in (0, 120], got {fps!r}")
    pictures = _animation_frames(frames, labels, max_side)
    height, width = pictures[0].shape[:2]
    even = (height + height % 2, width + width % 2)  # MPEG-4 codes 2x2 chroma blocks
    pictures = [_pad(p, even[1], even[0]) for p in pictures]

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_mp4(path, pictures, fps, even)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path


def _write_mp4(path: Path, pictures: list[np.ndarray], fps: float, even: tuple[int, int]) -> None:
    # OpenCV picks the container from the file name, so the temp file must end in .mp4: it lives in a
    # hidden temp folder (named like faceage.atomic's temp files) beside the destination.
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*MP4_FOURCC), float(fps), (even[1], even[0]))  # type: ignore[attr-defined]
        try:
            if not writer.isOpened():
                raise ImageWriteError(
                    f"{path.name}: this OpenCV build cannot write MP4 video (no '{MP4_FOURCC}' encoder); "
                    "write a GIF instead"
                )
            for picture in pictures:
                writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise ImageWriteError(f"{path.name}: OpenCV wrote no video data (disk full or unwritable folder?)")
        # OpenCV does not report failed writes: a full disk leaves a truncated video. Read it back.
        if _count_frames(tmp) != len(pictures):
            raise ImageWriteError(f"{path.name}: the video came out incomplete (disk full?)")
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    fsync_dir(path.parent)


def _count_frames(path: Path) -> int:
    """Frames that decode from a video file (0 when it cannot be opened)."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.isOpened() and capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def _int_in(value: object, low: int, high: float = math.inf) -> bool:
    return bool(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high)


def _check_path(path: str | os.PathLike[str], suffix: str) -> Path:
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ImageWriteError(f"{path.name}: expected a file name ending in {suffix}")
    if path.is_dir():
        raise ImageWriteError(f"{path.name}: output path is a folder")
    return path


def _check_frames(frames: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(
            f"{what}: expected a list of (H, W, 3) images or an (N, H, W, 3) array, got shape {frames.shape}"
        )
    try:
        frames = list(frames)
    except TypeError:
        raise ValueError(f"{what}: expected a list of (H, W, 3) images, got {type(frames).__name__}") from None
    if not frames:
        raise ValueError(f"{what}: expected at least one image, got none")
    return [check_rgb(frame, f"{what}[{index}]") for index, frame in enumerate(frames)]


def _check_labels(labels: Sequence[str] | None, count: int) -> list[str]:
    if labels is None or isinstance(labels, str):
        raise ValueError(f"labels: expected a list of {count} strings, got {labels!r}")
    labels = list(labels)
    if len(labels) != count or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"labels: expected {count} strings (one per image), got {labels!r}")
    return labels


def _animation_frames(
    frames: Sequence[np.ndarray], labels: Sequence[str] | None, max_side: int | None
) -> list[np.ndarray]:
    """Frames fitted into one (height + bar, width) size, labelled when ``labels`` is given."""
    frames = _check_frames(frames, "frames")
    labels = None if labels is None else _check_labels(labels, len(frames))
    if max_side is not None and not _int_in(max_side, 32):
        raise ValueError(f"max_side: expected an int of at least 32 pixels or None, got {max_side!r}")
    height = min(frame.shape[0] for frame in frames)
    width = max(round(frame.shape[1] * height / frame.shape[0]) for frame in frames)
    bar = _bar_height(height) if labels is not None else 0
    if max_side is not None and max(width, height + bar) > max_side:
        scale = max_side / max(width, height + bar)
        height, width = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
        bar = min(_bar_height(height), max_side - height) if labels is not None else 0
    out = []
    for index, frame in enumerate(frames):
        picture = _fit(frame, width, height)
        out.append(picture if labels is None else np.vstack([picture, _label_bar(width, bar, labels[index])]))
    return out


def _bar_height(picture_height: int) -> int:
    return max(16, round(picture_height * 0.1))


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if (rgb.shape[1], rgb.shape[0]) == (width, height):
        return rgb
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` scaled to fit inside width x height, centred on the bar colour."""
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    size = (min(width, max(1, round(rgb.shape[1] * scale))), min(height, max(1, round(rgb.shape[0] * scale))))
    return _pad(_resize(rgb, *size), width, height)


def _pad(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    out = np.full((height, width, 3), _BAR_RGB, np.uint8)
    top, left = (height - rgb.shape[0]) // 2, (width - rgb.shape[1]) // 2
    out[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return out


def _label_bar(width: int, height: int, label: str) -> np.ndarray:
    """A dark (height, width) bar with ``label`` centred in white, as large as fits."""
    bar = np.full((height, width, 3), _BAR_RGB, np.uint8)
    text = " ".join(label.split()).encode("ascii", "replace").decode("ascii")  # Hershey fonts: ASCII only
    if not text or height < 4 or width < 4:
        return bar
    (unit_w, unit_h), _ = cv2.getTextSize(text, _FONT, 1.0, 1)
    scale = min(0.6 * height / unit_h, 0.92 * width / unit_w)
    thickness = max(1, round(scale))
    (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    origin = ((width - text_w) // 2, (height + text_h) // 2)  # putText's origin is the baseline's left end
    cv2.putText(bar, text, origin, _FONT, scale, _TEXT_RGB, thickness, cv2.LINE_AA)
    return bar
