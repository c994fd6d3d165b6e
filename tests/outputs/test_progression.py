"""Progression outputs: labelled strip, GIF and MP4, written atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceage.errors import ImageWriteError
from faceage.imageio import read_metadata
from faceage.outputs import progression
from faceage.outputs.progression import progression_strip, save_gif, save_mp4
from faceage.outputs.provenance import provenance_metadata, read_provenance

BAR = np.array([24, 24, 24])


@pytest.fixture(scope="module")
def frames(astronaut: np.ndarray) -> list[np.ndarray]:
    """Five distinct 128 px 'ages' of the portrait."""
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    return [np.clip(small.astype(int) + shift, 0, 255).astype(np.uint8) for shift in (-80, -40, 0, 40, 80)]


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_strip_shape_and_labels(frames: list[np.ndarray]) -> None:
    wide = cv2.resize(frames[0], (256, 128))  # aspect ratio kept: twice as wide
    images = [frames[1], wide, frames[2][:64, :64]]  # the 64 px one is scaled up to the common height
    strip = progression_strip(images, ["15", "34 (photo)", ""])
    assert strip.dtype == np.uint8 and strip.ndim == 3 and strip.flags.c_contiguous
    bar, gap = 16, 2  # at 64 px: the smallest input's height is the default
    assert strip.shape == (64 + bar, 64 + gap + 128 + gap + 64, 3)
    labels = strip[64:].astype(int)
    first, second, third = labels[:, :64], labels[:, 66:194], labels[:, 196:]
    assert (first.max(axis=2) > 200).sum() > 10 and (second.max(axis=2) > 200).sum() > 10  # white text drawn
    assert (third == BAR).all()  # the empty label leaves its bar empty
    assert (labels[:, 64:66] == BAR).all()

    tall = progression_strip(frames, [str(age) for age in (5, 15, 34, 55, 75)], height=200)
    assert tall.shape[0] == 200 + 20 and tall.shape[1] == 5 * 200 + 4 * 2
    # the pictures themselves are the inputs, resized
    assert np.abs(tall[:200, :200].astype(int) - cv2.resize(frames[0], (200, 200)).astype(int)).mean() < 3


@pytest.mark.parametrize(
    ("images", "labels", "height", "message"),
    [
        ([], [], None, "at least one"),
        (None, ["a"], None, "list of"),
        ("frames", ["a", "b"], None, "labels"),
        ("frames", None, None, "labels"),
        ("frames", "abcde", None, "labels"),
        ("frames", [1, 2, 3, 4, 5], None, "labels"),
        ("float", ["a"], None, "uint8"),
        ("gray", ["a"], None, r"\(H, W, 3\)"),
        ("one", ["a"], None, "list of"),
        ("frames", list("abcde"), 8, "height"),
        ("frames", list("abcde"), 100.0, "height"),
    ],
)
def test_strip_rejects_bad_arguments(frames, images, labels, height, message) -> None:
    images = (
        {
            "frames": frames,
            "float": [frames[0].astype(np.float32)],
            "gray": [frames[0][..., 0]],
            "one": frames[0],
        }.get(images, images)
        if isinstance(images, str)
        else images
    )
    with pytest.raises(ValueError, match=message):
        progression_strip(images, labels, height)


def test_gif_frames_durations_loop_and_provenance(tmp_path: Path, frames: list[np.ndarray]) -> None:
    meta = provenance_metadata({"method": "ipcgan"}, [34.0], [5, 15, 34, 55, 75])
    mixed = frames[:4] + [cv2.resize(frames[4], (200, 100))]  # one of another size and shape
    path = save_gif(tmp_path / "aging.gif", mixed, ["5", "15", "34", "55", "75"], ms_per_frame=400, metadata=meta)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.info["loop"] == 0
        size = gif.size
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
            rgb = np.asarray(gif.convert("RGB"))
            assert (rgb[-13:].max(axis=2) > 200).sum() > 5  # a label in every frame
        assert durations == [400] * 5
    # the smallest height (100) is common; the widest frame at that height (200) sets the width
    assert size == (200, 100 + 16)
    assert read_provenance(path) == meta and read_metadata(path) == meta
    assert _leftovers(tmp_path, {"aging.gif"}) == []


def test_gif_options(tmp_path: Path, frames: list[np.ndarray]) -> None:
    big = [cv2.resize(f, (400, 300)) for f in frames[:3]]
    path = save_gif(tmp_path / "once.gif", big, loop=False, max_side=100)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and "loop" not in gif.info and max(gif.size) <= 100
        assert gif.info["duration"] == 600
        assert "comment" not in gif.info
    assert read_provenance(path) == {}


def test_mp4_reads_back_with_opencv(tmp_path: Path, frames: list[np.ndarray]) -> None:
    odd = [cv2.resize(f, (101, 75)) for f in frames]
    path = save_mp4(tmp_path / "aging.mp4", odd, [f"{age}" for age in (5, 15, 34, 55, 75)], fps=4)
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(4, abs=0.01)
        decoded = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            decoded.append(bgr)
    finally:
        capture.release()
    assert len(decoded) == 5
    assert decoded[0].shape == (76 + 16, 102, 3)  # padded to even sides, plus the label bar
    # brightness order of the frames survives the encoder
    means = [float(f[:75].mean()) for f in decoded]
    assert means == sorted(means)
    assert _leftovers(tmp_path, {"aging.mp4"}) == []


def test_writes_replace_an_existing_file_only_on_success(tmp_path: Path, frames: list[np.ndarray], monkeypatch) -> None:
    gif, mp4 = tmp_path / "a.gif", tmp_path / "a.mp4"
    gif.write_bytes(b"old gif")
    mp4.write_bytes(b"old mp4")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    class ClosedWriter:  # what OpenCV gives when it has no encoder
        def __init__(self, *args):
            pass

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "save", broken_save)
        with pytest.raises(ImageWriteError, match="disk full"):
            save_gif(gif, frames)
    with monkeypatch.context() as patch:
        patch.setattr(progression.cv2, "VideoWriter", ClosedWriter)
        with pytest.raises(ImageWriteError, match="cannot write MP4"):
            save_mp4(mp4, frames)
    assert gif.read_bytes() == b"old gif" and mp4.read_bytes() == b"old mp4"
    assert _leftovers(tmp_path, {"a.gif", "a.mp4"}) == []

    save_gif(gif, frames)
    save_mp4(mp4, frames)
    assert Image.open(gif).n_frames == 5 and cv2.VideoCapture(str(mp4)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert _leftovers(tmp_path, {"a.gif", "a.mp4"}) == []


def test_animation_bad_arguments(tmp_path: Path, frames: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        save_gif(tmp_path / "x.gif", [])
    with pytest.raises(ValueError, match="labels"):
        save_gif(tmp_path / "x.gif", frames, ["only one"])
    with pytest.raises(ValueError, match="uint8"):
        save_mp4(tmp_path / "x.mp4", [f.astype(np.uint16) for f in frames])
    with pytest.raises(ValueError, match="ms_per_frame"):
        save_gif(tmp_path / "x.gif", frames, ms_per_frame=5)
    with pytest.raises(ValueError, match="max_side"):
        save_gif(tmp_path / "x.gif", frames, max_side=4)
    with pytest.raises(ValueError, match="fps"):
        save_mp4(tmp_path / "x.mp4", frames, fps=0)
    with pytest.raises(ImageWriteError, match="ending in .gif"):
        save_gif(tmp_path / "x.png", frames)
    with pytest.raises(ImageWriteError, match="ending in .mp4"):
        save_mp4(tmp_path / "x.avi", frames)
    assert list(tmp_path.iterdir()) == []
