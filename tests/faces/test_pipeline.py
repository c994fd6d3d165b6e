"""faceage.faces.landmarks and faceage.faces.pipeline: dense points per face, aligned faces."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage.errors import NoFaceError
from faceage.faces import landmarks as lm
from faceage.faces.align import alignment_matrix, transform_points
from faceage.faces.detect import FaceDetector
from faceage.faces.landmarks import LandmarkModel, five_points, region_polygons
from faceage.faces.pipeline import AlignedFace, FacePipeline
from faceage.imageio import load_image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def marks() -> LandmarkModel:
    return LandmarkModel()


@pytest.fixture(scope="module")
def pipeline(detector: FaceDetector, marks: LandmarkModel) -> FacePipeline:
    return FacePipeline(128, detector=detector, landmarks=marks)


def dataset_photos(root: Path, count: int = 3) -> list[Path]:
    utk = sorted((root / "utkface" / "images").glob("*.jpg"))
    aaf = sorted((root / "aaf" / "images").glob("*.jpg"))
    return utk[1000 :: len(utk) // count][:count] + aaf[500 :: len(aaf) // count][:count]


def group_photo(root: Path) -> np.ndarray:
    """Six real faces, 45 to 200 px wide, side by side on one canvas."""
    canvas = np.full((300, 1100, 3), 120, np.uint8)
    x = 10
    for path, width in zip(dataset_photos(root), [200, 150, 110, 80, 60, 45]):
        img = load_image(path)
        height = round(img.shape[0] * width / img.shape[1])
        canvas[20 : 20 + height, x : x + width] = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        x += width + 70
    return canvas


# ----------------------------------------------------------------------------- landmarks


def test_landmarks_on_the_astronaut(detector: FaceDetector, marks: LandmarkModel, astronaut: np.ndarray) -> None:
    face = detector.detect(astronaut)[0]
    points = marks.predict(astronaut, face)
    assert points is not None and points.shape == (478, 2) and points.dtype == np.float32
    x0, y0, x1, y1 = face.box
    inside = (points[:, 0] > x0 - 20) & (points[:, 0] < x1 + 20) & (points[:, 1] > y0 - 40) & (points[:, 1] < y1 + 20)
    assert inside.all()
    # the dense five points agree with the detector's within a fraction of the eye distance
    interocular = np.linalg.norm(face.points[1] - face.points[0])
    assert np.abs(five_points(points)[:2] - face.points[:2]).max() < 0.25 * interocular
    np.testing.assert_array_equal(marks.predict(astronaut, face), points)  # deterministic


def test_landmarks_do_not_depend_on_photo_resolution(
    detector: FaceDetector, marks: LandmarkModel, astronaut: np.ndarray
) -> None:
    base = marks.predict(astronaut, detector.detect(astronaut)[0])
    big = cv2.resize(astronaut, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)  # 4096 px
    points = marks.predict(big, detector.detect(big)[0])
    assert points is not None
    back = (points + 0.5) / 8 - 0.5
    assert np.abs(back - base).mean() < 0.5  # within half a pixel of the 512 px photo


def test_regions_follow_our_left_right_convention(
    detector: FaceDetector, marks: LandmarkModel, astronaut: np.ndarray
) -> None:
    points = marks.predict(astronaut, detector.detect(astronaut)[0])
    assert set(lm.REGION_NAMES) == set(lm.REGION_INDICES) == set(lm.REGION_CONTOURS)
    x = {name: points[list(idx), 0].mean() for name, idx in lm.REGION_INDICES.items()}
    for part in ("eye", "brow", "iris"):
        assert x[f"left_{part}"] < x["nose"] < x[f"right_{part}"]
    y = {name: points[list(idx), 1].mean() for name, idx in lm.REGION_INDICES.items()}
    assert y["left_brow"] < y["left_eye"] < y["nose"] < y["lips"]
    outer, inner = region_polygons(points, "lips")
    assert abs(cv2.contourArea(outer)) > abs(cv2.contourArea(inner)) > 0
    for name in lm.REGION_NAMES:  # every outline is a proper polygon
        assert all(len(p) >= 4 and abs(cv2.contourArea(p)) > 0 for p in region_polygons(points, name)), name
    oval = region_polygons(points, "face_oval")[0]
    for name in ("left_eye", "right_eye", "lips", "nose"):
        centre = tuple(float(v) for v in points[list(lm.REGION_INDICES[name])].mean(axis=0))
        assert cv2.pointPolygonTest(oval, centre, False) > 0


def test_landmarks_for_every_face_of_a_group_photo(
    detector: FaceDetector, marks: LandmarkModel, shared_datasets: Path
) -> None:
    canvas = group_photo(shared_datasets)
    faces = detector.detect(canvas)
    assert len(faces) == 6
    for face in faces:  # small faces included: the crop is upscaled for the landmarker
        points = marks.predict(canvas, face)
        assert points is not None, f"no landmarks for the {face.width:.0f} px face"
        centre = points.mean(axis=0)
        assert face.box[0] < centre[0] < face.box[2] and face.box[1] < centre[1] < face.box[3]


def test_landmarks_reject_a_box_without_that_face(
    detector: FaceDetector, marks: LandmarkModel, astronaut: np.ndarray
) -> None:
    face = detector.detect(astronaut)[0]
    # same box and points moved onto the rocket-free background at the top right
    moved = dataclasses.replace(face, box=face.box + [230, -60, 230, -60], points=face.points + [230, -60])
    assert marks.predict(astronaut, moved) is None


# ----------------------------------------------------------------------------- pipeline


def _check_aligned(face: AlignedFace, size: int) -> None:
    assert face.size == size
    assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
    assert face.matrix.shape == (2, 3) and face.matrix.dtype == np.float64
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert face.points5.shape == (5, 2) and face.points5.dtype == np.float32
    assert 0.7 <= face.score <= 1.0
    # the alignment is the FFHQ one of the stored five points: eyes level, centred, at ~47 %
    np.testing.assert_allclose(face.matrix, alignment_matrix(face.points5, size), atol=1e-9)
    eyes = transform_points(face.points5, face.matrix)[:2] / size
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.03 and 0.42 < eyes[:, 1].mean() < 0.52
    assert abs(eyes[:, 0].mean() - 0.5) < 0.03
    if face.landmarks is not None:
        assert face.landmarks.shape == (478, 2) and face.landmarks.dtype == np.float32
        # stored in aligned coordinates: the eye contours sit on the aligned eye centres
        np.testing.assert_allclose(five_points(face.landmarks)[:2] / size, eyes, atol=2e-3)


def test_process_astronaut(pipeline: FacePipeline, astronaut: np.ndarray) -> None:
    faces = pipeline.process(astronaut)
    assert len(faces) == 1
    face = faces[0]
    _check_aligned(face, 128)
    assert face.landmarks is not None
    assert (face.landmarks >= -5).all() and (face.landmarks < 133).all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.size = 256  # type: ignore[misc]


def test_process_group_photo_and_max_faces(pipeline: FacePipeline, shared_datasets: Path) -> None:
    canvas = group_photo(shared_datasets)
    faces = pipeline.process(canvas)
    assert len(faces) == 6
    for face in faces:
        _check_aligned(face, 128)
        assert face.landmarks is not None
    assert [f.box.tolist() for f in pipeline.process(canvas, max_faces=2)] == [f.box.tolist() for f in faces[:2]]
    assert pipeline.process(canvas, max_faces=0) == []


def test_align_one_on_dataset_crops(pipeline: FacePipeline, shared_datasets: Path) -> None:
    for path in dataset_photos(shared_datasets):
        face = pipeline.align_one(load_image(path), name=path.name)
        _check_aligned(face, 128)


def test_align_one_raises_without_a_face(pipeline: FacePipeline) -> None:
    with pytest.raises(NoFaceError, match="wall.jpg: no face"):
        pipeline.align_one(np.full((200, 200, 3), 200, np.uint8), name="wall.jpg")
    assert pipeline.process(np.zeros((64, 64, 3), np.uint8)) == []


def test_without_dense_landmarks_uses_the_detector_points(detector: FaceDetector, astronaut: np.ndarray) -> None:
    face = FacePipeline(128, detector=detector, landmarks=False).align_one(astronaut)
    _check_aligned(face, 128)
    assert face.landmarks is None
    np.testing.assert_array_equal(face.points5, detector.detect(astronaut)[0].points)


@pytest.mark.parametrize("size", [256, 1024])
def test_larger_sizes(detector: FaceDetector, marks: LandmarkModel, astronaut: np.ndarray, size: int) -> None:
    face = FacePipeline(size, detector=detector, landmarks=marks).align_one(astronaut)
    _check_aligned(face, size)
