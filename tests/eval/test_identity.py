"""IdentityVerifier: faithful to each model's reference runtime, separates people, strict on input."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import pytest

from faceage.assets import model_path
from faceage.eval.age_estimator import box_to_rectangle
from faceage.eval.identity import (
    ACCEPT_THRESHOLDS,
    ARCFACE_TEMPLATE_112,
    IdentityVerifier,
    VerificationResult,
    similarity_transform,
)


@pytest.fixture(scope="module", params=["sface", "dlib"])
def verifier(request) -> IdentityVerifier:
    return IdentityVerifier(request.param, threads=1)


@pytest.fixture(scope="module")
def sface() -> IdentityVerifier:
    return IdentityVerifier("sface", threads=1)


@pytest.fixture(scope="module")
def people(utkface) -> list[np.ndarray]:
    """Ten UTKFace adults, ten different people (different ages/times; UTKFace has no ids)."""
    return [rgb for age in (25, 32, 41, 52, 66) for rgb, _ in utkface(age, 2)]


def shifted_and_brightened(rgb: np.ndarray) -> np.ndarray:
    matrix = np.float32([[1, 0, 6], [0, 1, 4]])
    moved = cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return np.clip(moved.astype(np.int16) + 20, 0, 255).astype(np.uint8)


def test_thresholds_are_the_published_ones():
    assert ACCEPT_THRESHOLDS == {"sface": 0.363, "dlib": 0.6}


def test_same_photo_shifted_and_brightened_is_accepted(verifier, people, astronaut):
    photos = people[:4] + [astronaut]
    a = np.concatenate([verifier.embed(p)[:1] for p in photos])
    b = np.concatenate([verifier.embed(shifted_and_brightened(p))[:1] for p in photos])
    result = verifier.verify(a, b)
    assert result.accepted.all(), result.score
    assert result.threshold == ACCEPT_THRESHOLDS[verifier.model]


def test_different_people_are_rejected(verifier, people):
    embeddings = np.concatenate([verifier.embed(p)[:1] for p in people])
    rows, cols = np.triu_indices(len(people), 1)
    result = verifier.verify(embeddings[rows], embeddings[cols])
    assert not result.accepted.any(), result.score[result.accepted]


def test_aligned_crop_matches_the_photo(verifier, astronaut, yunet, ffhq_align):
    boxes, points = yunet(astronaut)
    crop = ffhq_align(astronaut, points[0], 128)
    score, accepted = verifier.verify(verifier.embed_aligned([crop])[0], verifier.embed(astronaut, boxes[:1])[0])
    assert accepted and isinstance(accepted, bool) and isinstance(score, float)


def test_sface_matches_opencv_face_recognizer(sface, astronaut, yunet):
    _, points = yunet(astronaut)
    crop = cv2.warpAffine(astronaut, similarity_transform(points[0], ARCFACE_TEMPLATE_112), (112, 112))
    reference = cv2.FaceRecognizerSF.create(str(model_path("sface")), "").feature(
        np.ascontiguousarray(crop[:, :, ::-1])
    )
    reference = reference[0] / np.linalg.norm(reference)
    ours = sface.embed(astronaut, points=points[:1])[0]
    assert float(ours @ reference) > 0.9999


def test_sface_dlib_landmarks_agree_with_yunet_points(sface, people, yunet):
    # dlib's 5 points are mapped through DLIB5_TEMPLATE_112; YuNet's go to the ArcFace template.
    for rgb in people[:4]:
        boxes, points = yunet(rgb)
        assert sface.similarity(sface.embed(rgb, points=points[:1])[0], sface.embed(rgb, boxes[:1])[0]) > 0.85


def test_dlib_matches_dlibs_own_descriptor(astronaut):
    verifier = IdentityVerifier("dlib")
    box = verifier.detect(astronaut)[0]
    shape = dlib.shape_predictor(str(model_path("dlib_5pt")))(astronaut, box_to_rectangle(box))
    resnet = dlib.face_recognition_model_v1(str(model_path("dlib_resnet")))
    reference = np.asarray(resnet.compute_face_descriptor(astronaut, shape), dtype=np.float32)
    np.testing.assert_allclose(verifier.embed(astronaut, box[None])[0], reference, atol=1e-5)


def test_deterministic_and_batch_equals_one_by_one(verifier, people, yunet, ffhq_align):
    crops = [ffhq_align(rgb, yunet(rgb)[1][0], 128) for rgb in people[:3]]
    batch = verifier.embed_aligned(crops)
    assert batch.shape == (3, 128) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, verifier.embed_aligned(crops))
    single = np.concatenate([verifier.embed_aligned([c]) for c in crops])
    np.testing.assert_allclose(batch, single, atol=1e-5)

    rgb = people[0]
    box = verifier.detect(rgb)[0]
    boxes = np.stack([box, box + [5, 5, 5, 5]])
    np.testing.assert_allclose(
        verifier.embed(rgb, boxes), np.concatenate([verifier.embed(rgb, b[None]) for b in boxes]), atol=1e-5
    )


def test_verify_shapes_and_broadcasting(verifier):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 128)) * 0.1, rng.normal(size=(4, 128)) * 0.1
    batched = verifier.verify(a, b)
    assert isinstance(batched, VerificationResult)
    assert batched.score.shape == batched.distance.shape == batched.accepted.shape == (4,)
    single = verifier.verify(a[1], b[1])
    assert isinstance(single.score, float) and isinstance(single.accepted, bool)
    assert single.score == pytest.approx(float(batched.score[1]), abs=1e-6)
    assert verifier.verify(a[:1], b).score.shape == (4,)  # one reference against many
    same = verifier.verify(a[0], a[0])
    assert same.accepted and same.distance == pytest.approx(0.0, abs=1e-6)
    if verifier.model == "dlib":
        assert single.score == pytest.approx(1.0 - single.distance)
    else:
        assert verifier.similarity(a[0], -a[0]) == pytest.approx(-1.0)


def test_empty_inputs_give_empty_outputs(verifier, astronaut):
    for result in (
        verifier.embed(astronaut, []),
        verifier.embed_aligned([]),
        verifier.embed(np.zeros((100, 100, 3), np.uint8)),
    ):
        assert result.shape == (0, 128) and result.dtype == np.float32
    assert verifier.verify(np.zeros((0, 128)), np.zeros((0, 128))).score.shape == (0,)


def test_invalid_inputs_raise_naming_what_they_got(verifier, astronaut):
    with pytest.raises(ValueError, match="float32"):
        verifier.embed(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        verifier.embed(astronaut, [1, 2, 3])
    with pytest.raises(ValueError, match=r"square .* \(80, 64, 3\)"):
        verifier.embed_aligned([np.zeros((80, 64, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"got shape \(4, 64\)"):
        verifier.verify(np.zeros((4, 64)), np.zeros((4, 64)))
    with pytest.raises(ValueError, match="3 and 2"):
        verifier.verify(np.zeros((3, 128)), np.zeros((2, 128)))


def test_points_are_checked_and_sface_only(astronaut, sface, yunet):
    boxes, points = yunet(astronaut)
    with pytest.raises(ValueError, match=r"got shape \(1, 4, 2\)"):
        sface.embed(astronaut, points=points[:, :4])
    with pytest.raises(ValueError, match="2 boxes and 1 point sets"):
        sface.embed(astronaut, boxes=np.repeat(boxes[:1], 2, 0), points=points[:1])
    with pytest.raises(ValueError, match="only used by the sface model"):
        IdentityVerifier("dlib").embed(astronaut, points=points)


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="got 'arcface'"):
        IdentityVerifier("arcface")
