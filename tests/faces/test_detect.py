"""faceage.faces.detect: YuNet faces on real photos of every size, in our point convention."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage.faces.detect import DetectedFace, FaceDetector
from faceage.imageio import load_image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def dataset_photos(root: Path, count: int = 3) -> list[Path]:
    """A fixed spread of real photos: ``count`` from UTKFace and ``count`` from AAF."""
    utk = sorted((root / "utkface" / "images").glob("*.jpg"))
    aaf = sorted((root / "aaf" / "images").glob("*.jpg"))
    return utk[1000 :: len(utk) // count][:count] + aaf[500 :: len(aaf) // count][:count]


def group_photo(root: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Real faces of several sizes (60 to 220 px wide tiles) on one grey canvas, and their tiles."""
    paths = dataset_photos(root, 3)
    widths = [220, 170, 130, 100, 80, 60]
    canvas = np.full((560, 1000, 3), 110, np.uint8)
    tiles = []
    x, y = 20, 20
    for path, width in zip(paths, widths):
        img = load_image(path)
        height = round(img.shape[0] * width / img.shape[1])
        canvas[y : y + height, x : x + width] = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        tiles.append((x, y, x + width, y + height))
        x += width + 60
        if x > 700:
            x, y = 20, 330
    return canvas, tiles


def _check_face(face: DetectedFace, image_shape: tuple[int, ...]) -> None:
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert face.points.dtype == np.float32 and face.points.shape == (5, 2)
    assert 0.7 <= face.score <= 1.0
    x0, y0, x1, y1 = face.box
    assert x1 > x0 and y1 > y0
    le, re, nose, ml, mr = face.points
    assert le[0] < re[0] and ml[0] < mr[0]  # left = smaller x on an upright face
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])  # eyes above the nose above the mouth
    centre = face.points.mean(axis=0)
    assert x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1


def test_astronaut_has_one_face(detector: FaceDetector, astronaut: np.ndarray) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    _check_face(face, astronaut.shape)
    # Eileen Collins' face is around x 180-270, y 70-180 in the 512x512 portrait
    assert 160 < face.box[0] < 200 and 250 < face.box[2] < 290
    assert 40 < face.box[1] < 90 and 160 < face.box[3] < 200
    assert 35 < np.linalg.norm(face.points[1] - face.points[0]) < 50


def test_deterministic(detector: FaceDetector, astronaut: np.ndarray) -> None:
    a = detector.detect(astronaut)
    b = FaceDetector().detect(astronaut.copy())
    assert len(a) == len(b) == 1
    assert np.array_equal(a[0].box, b[0].box) and np.array_equal(a[0].points, b[0].points)
    assert a[0].score == b[0].score


def test_blank_and_noise_have_no_face(detector: FaceDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((32, 32, 3), np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_real_dataset_crops(detector: FaceDetector, shared_datasets: Path) -> None:
    for path in dataset_photos(shared_datasets):
        img = load_image(path)
        faces = detector.detect(img)
        assert faces, f"no face in {path.name}"
        _check_face(faces[0], img.shape)
        # dataset crops are centred on the face
        centre = faces[0].points.mean(axis=0)
        assert abs(centre[0] - img.shape[1] / 2) < img.shape[1] * 0.2, path.name


@pytest.mark.parametrize("side", [64, 48])
def test_tiny_tight_crops(detector: FaceDetector, shared_datasets: Path, side: int) -> None:
    for path in dataset_photos(shared_datasets, 2)[:2]:  # UTKFace: the face fills the frame
        img = load_image(path)
        h, w = img.shape[:2]
        tight = img[h // 8 : h - h // 8, w // 8 : w - w // 8]  # even tighter than UTKFace
        small = cv2.resize(tight, (side, side), interpolation=cv2.INTER_AREA)
        faces = detector.detect(small)
        assert faces, f"no face in {side}px crop of {path.name}"
        _check_face(faces[0], small.shape)


def test_huge_photo_is_detected_at_the_right_place(detector: FaceDetector, astronaut: np.ndarray) -> None:
    small = detector.detect(astronaut)[0]
    scale = 4000 / 512
    big = cv2.resize(astronaut, (4000, 4000), interpolation=cv2.INTER_LINEAR)[:3000]  # 12 MP
    faces = detector.detect(big)
    assert len(faces) == 1
    _check_face(faces[0], big.shape)
    # same face, same place (pixel-centre convention preserved through the rescaling)
    expected = (small.points + 0.5) * scale - 0.5
    assert np.abs(faces[0].points - expected).max() < 0.05 * faces[0].width


def test_face_filling_a_large_frame(detector: FaceDetector, astronaut: np.ndarray) -> None:
    # a selfie-like close-up: the face is ~1000 px wide, far above YuNet's native range
    x0, y0, x1, y1 = detector.detect(astronaut)[0].box.astype(int)
    crop = astronaut[max(y0 - 20, 0) : y1 + 20, max(x0 - 20, 0) : x1 + 20]
    close_up = cv2.resize(crop, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
    faces = detector.detect(close_up)
    assert len(faces) == 1
    _check_face(faces[0], close_up.shape)
    assert faces[0].width > 0.6 * close_up.shape[1]


def test_group_photo_returns_every_face_largest_first(detector: FaceDetector, shared_datasets: Path) -> None:
    canvas, tiles = group_photo(shared_datasets)
    faces = detector.detect(canvas)
    assert len(faces) == len(tiles)
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    # one face per tile
    owners = []
    for face in faces:
        _check_face(face, canvas.shape)
        cx, cy = face.points.mean(axis=0)
        owners.append(next(i for i, (x0, y0, x1, y1) in enumerate(tiles) if x0 <= cx <= x1 and y0 <= cy <= y1))
    assert sorted(owners) == list(range(len(tiles)))


def test_rolled_face_points_follow_the_face(detector: FaceDetector, astronaut: np.ndarray) -> None:
    upright = detector.detect(astronaut)[0].points
    rotation = cv2.getRotationMatrix2D((255.5, 255.5), 25, 1.0)  # head tilted 25 degrees
    rolled = cv2.warpAffine(astronaut, rotation, (512, 512), borderMode=cv2.BORDER_REFLECT)
    faces = detector.detect(rolled)
    assert len(faces) == 1
    expected = upright @ rotation[:, :2].T + rotation[:, 2]
    interocular = np.linalg.norm(upright[1] - upright[0])
    assert np.abs(faces[0].points - expected).max() < 0.3 * interocular


def test_bad_input(detector: FaceDetector, astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        detector.detect(astronaut[:, :, 0])
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\], got 1.5"):
        FaceDetector(score_threshold=1.5)


def test_tiny_views_never_reach_yunet_unpadded(detector: FaceDetector) -> None:
    """OpenCV's YuNet answers inputs at most 32 px high with a row of uninitialised memory (score 1.0,
    coordinates that change between calls): the phantom faces of a 6000x200 banner."""
    for shape in [(21, 640), (7, 640), (32, 640), (640, 21)]:
        rows = detector._run(np.full((*shape, 3), 255, np.uint8), 1.0, 1.0, 0)
        assert len(rows) == 0, shape


def test_a_face_on_a_wide_banner_is_found_the_same_way_every_time(detector: FaceDetector) -> None:
    from faceage.cli import EXAMPLE_PHOTO

    face = cv2.resize(load_image(EXAMPLE_PHOTO), (200, 200), interpolation=cv2.INTER_AREA)
    banner = np.full((200, 6000, 3), 255, np.uint8)
    banner[:, 4100:4300] = face  # 40 px from a tile border: whole in the overlapping tile
    tall = np.full((6000, 200, 3), 255, np.uint8)
    tall[4100:4300] = face
    results = []
    for _ in range(4):
        results.append([f.box.round(2).tolist() for f in detector.detect(banner)])
        detector.detect(face)  # other input sizes in between must not change the answer
    assert len(results[0]) == 1 and all(r == results[0] for r in results)
    (alone,) = detector.detect(face)  # where the face is on its own
    assert np.allclose(results[0][0], alone.box + [4100, 0, 4100, 0], atol=3)
    (upright,) = detector.detect(tall)  # a tall strip is tiled the same way
    assert np.allclose(upright.box, alone.box + [0, 4100, 0, 4100], atol=3)
    assert detector.detect(np.full((200, 6000, 3), 255, np.uint8)) == []  # empty background: nothing


def test_detections_the_landmark_fit_rejects_are_dropped() -> None:
    from skimage import data

    from faceage.faces.pipeline import FacePipeline

    eager = FaceDetector(score_threshold=0.05)  # low enough to take a cat's face for a person's
    cat = data.chelsea()
    assert len(eager.detect(cat)) >= 1
    assert FacePipeline(detector=eager).process(cat) == []
