"""faceage.faces.face_landmarker: MediaPipe's FaceLandmarker graph on LiteRT, step by step."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.assets import EXAMPLE_PHOTO, model_path
from faceage.faces import face_landmarker as fl
from faceage.faces.detect import FaceDetector
from faceage.faces.landmarks import LandmarkModel, _warp_crop, five_points
from faceage.imageio import load_image


def test_anchors_cover_the_blazeface_grid():
    anchors = fl._anchors()
    assert anchors.shape == (896, 2)
    # 16x16 cells with 2 anchors, then 8x8 cells with 6 (three stride-16 layers share one grid)
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[511], [15.5 / 16, 15.5 / 16])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_suppression_averages_overlapping_boxes_by_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 1.0
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    kept = fl._weighted_nms(boxes, points, scores)
    assert len(kept) == 2
    box, pts = kept[0]
    assert np.allclose(box, [0.025, 0.0, 1.025, 1.0], atol=1e-6) and np.allclose(pts, 0.25)
    assert np.allclose(kept[1][0], boxes[2])


@pytest.fixture(scope="module")
def landmarker() -> fl.FaceLandmarker:
    return fl.FaceLandmarker(model_path("face_detector"), model_path("face_mesh"), num_faces=2)


def test_one_face_in_a_face_crop_and_none_in_a_blank_one(landmarker: fl.FaceLandmarker):
    rgb = load_image(EXAMPLE_PHOTO)
    (face,) = FaceDetector().detect(rgb)
    model = LandmarkModel()
    crop = _warp_crop(rgb, model.crop_matrix(face), 256)
    (points,) = landmarker.detect(crop)
    assert points.shape == (478, 3) and points.dtype == np.float32
    # the mesh's eyes land on the detector's eyes, mapped into the crop
    eyes_crop = five_points(points[:, :2] * 256 - 0.5)[:2]
    detector_eyes = np.asarray(face.points[:2], np.float64) @ model.crop_matrix(face)[:, :2].T
    detector_eyes += model.crop_matrix(face)[:, 2]
    assert np.abs(eyes_crop - detector_eyes).max() < 8
    assert landmarker.detect(np.full((256, 256, 3), 128, np.uint8)) == []


def test_rejects_a_non_square_image(landmarker: fl.FaceLandmarker):
    with pytest.raises(ValueError, match="square"):
        landmarker.detect(np.zeros((200, 256, 3), np.uint8))
