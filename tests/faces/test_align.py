"""faceage.faces.align: the FFHQ recipe, its matrix conventions, and the padded warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from faceage.faces.align import (
    alignment_matrix,
    eyes_and_mouth,
    ffhq_quad,
    invert_affine,
    transform_points,
    warp_face,
)
from faceage.faces.detect import FaceDetector

# A frontal face in photo pixels: eyes 20 px apart, mouth corners 20 px below the eyes.
# FFHQ: half side = max(2 * 20, 1.8 * 20) = 40, centre = eye midpoint + 0.1 * (0, 20).
CANONICAL = np.array([[90.0, 100.0], [110.0, 100.0], [100.0, 110.0], [92.0, 120.0], [108.0, 120.0]])


@pytest.fixture(scope="module")
def astronaut_points(astronaut: np.ndarray) -> np.ndarray:
    return FaceDetector().detect(astronaut)[0].points


def _similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


@pytest.mark.parametrize("size", [128, 256, 1024])
def test_canonical_face_lands_on_the_ffhq_template(size: int) -> None:
    matrix = alignment_matrix(CANONICAL, size)
    assert matrix.dtype == np.float64 and matrix.shape == (2, 3)
    aligned = transform_points(CANONICAL, matrix)
    assert aligned.dtype == np.float32
    # corner-based: photo x 60 → aligned edge 0, photo x 140 → aligned edge N
    expected = (CANONICAL - [60.0, 62.0]) * (size / 80.0) - 0.5
    np.testing.assert_allclose(aligned, expected, atol=1e-4)
    # in words: eyes level at 47.5 % of the height, a quarter of the side apart, centred
    eye_l, eye_r = aligned[0], aligned[1]
    assert eye_l[1] == pytest.approx(eye_r[1], abs=1e-4)
    assert (eye_l[1] + 0.5) / size == pytest.approx(0.475, abs=1e-6)
    assert (eye_r[0] - eye_l[0]) / size == pytest.approx(0.25, abs=1e-6)
    assert (eye_l[0] + eye_r[0]) / 2 == pytest.approx(size / 2 - 0.5, abs=1e-4)


@pytest.mark.parametrize(("angle", "scale", "shift"), [(0, 1, (0, 0)), (30, 2.5, (400, -50)), (-75, 0.3, (12, 900))])
def test_alignment_is_invariant_to_where_the_face_is(angle: float, scale: float, shift: tuple[float, float]) -> None:
    similarity = _similarity(angle, scale, shift)
    moved = transform_points(CANONICAL, similarity)
    aligned = transform_points(moved, alignment_matrix(moved, 128))
    np.testing.assert_allclose(aligned, transform_points(CANONICAL, alignment_matrix(CANONICAL, 128)), atol=2e-3)


def test_round_trip_and_inverse(astronaut_points: np.ndarray) -> None:
    matrix = alignment_matrix(astronaut_points, 256)
    back = transform_points(transform_points(astronaut_points, matrix), invert_affine(matrix))
    np.testing.assert_allclose(back, astronaut_points, atol=1e-3)
    np.testing.assert_allclose(invert_affine(matrix), cv2.invertAffineTransform(matrix), atol=1e-12)
    np.testing.assert_allclose(invert_affine(invert_affine(matrix)), matrix, atol=1e-9)


def test_real_face_eyes_land_level_and_centred(astronaut_points: np.ndarray) -> None:
    for size in (128, 1024):
        aligned = transform_points(astronaut_points, alignment_matrix(astronaut_points, size))
        eye_l, eye_r = aligned[0] / size, aligned[1] / size
        assert abs(eye_l[1] - eye_r[1]) < 0.03  # level (FFHQ averages eye line and face axis)
        assert abs((eye_l[0] + eye_r[0]) / 2 - 0.5) < 0.03
        assert 0.42 < eye_l[1] < 0.52
        assert 0.2 < eye_r[0] - eye_l[0] <= 0.251


def test_dense_layouts_give_the_same_matrix_as_their_five_points() -> None:
    rng = np.random.default_rng(1)
    dlib = rng.uniform(0, 200, (68, 2))
    dlib[36:42] = CANONICAL[0] + rng.normal(0, 2, (6, 2))
    dlib[36:42] -= dlib[36:42].mean(axis=0) - CANONICAL[0]
    dlib[42:48] = CANONICAL[1] + rng.normal(0, 2, (6, 2))
    dlib[42:48] -= dlib[42:48].mean(axis=0) - CANONICAL[1]
    dlib[48], dlib[54] = CANONICAL[3], CANONICAL[4]
    np.testing.assert_allclose(alignment_matrix(dlib, 128), alignment_matrix(CANONICAL, 128), atol=1e-9)
    eye_l, eye_r, mouth_l, mouth_r = eyes_and_mouth(dlib)
    np.testing.assert_allclose(eye_l, CANONICAL[0])


def test_scale_widens_the_square_around_the_same_centre() -> None:
    q1, q2 = ffhq_quad(CANONICAL), ffhq_quad(CANONICAL, scale=1.5)
    np.testing.assert_allclose(q1.mean(axis=0), q2.mean(axis=0))
    assert np.linalg.norm(q2[3] - q2[0]) == pytest.approx(1.5 * np.linalg.norm(q1[3] - q1[0]))


@pytest.mark.parametrize("size", [128, 256, 1024])
def test_warp_matches_the_ffhq_script_on_a_real_face(
    astronaut: np.ndarray, astronaut_points: np.ndarray, size: int
) -> None:
    matrix = alignment_matrix(astronaut_points, size)
    out = warp_face(astronaut, matrix, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    # the FFHQ script: PIL quad transform at 4x (corner coordinates: quad + 0.5), then downscale
    quad = ffhq_quad(astronaut_points)
    reference = Image.fromarray(astronaut).transform(
        (size * 4, size * 4), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR
    )
    reference = np.asarray(reference.resize((size, size), Image.LANCZOS)).astype(int)
    diff = np.abs(out.astype(int) - reference)
    assert diff.mean() < 1.5
    assert np.percentile(diff, 99) < 8


def test_sizes_are_consistent(astronaut: np.ndarray, astronaut_points: np.ndarray) -> None:
    a128 = warp_face(astronaut, alignment_matrix(astronaut_points, 128), 128)
    a1024 = warp_face(astronaut, alignment_matrix(astronaut_points, 1024), 1024)
    down = cv2.resize(a1024, (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(a128.astype(int) - down).mean() < 2.5


def test_large_photo_gives_the_same_face_as_a_small_one(astronaut: np.ndarray, astronaut_points: np.ndarray) -> None:
    # the same photo at 8x (4096 px): alignment must downscale properly (no aliasing)
    scale = 8
    big = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    big_points = (astronaut_points + 0.5) * scale - 0.5
    a_small = warp_face(astronaut, alignment_matrix(astronaut_points, 128), 128)
    a_big = warp_face(big, alignment_matrix(big_points, 128), 128)
    assert np.abs(a_small.astype(int) - a_big).mean() < 3


def test_warp_only_uses_the_face_region(astronaut: np.ndarray, astronaut_points: np.ndarray) -> None:
    # scribbling far from the face changes nothing in the aligned output
    matrix = alignment_matrix(astronaut_points, 128)
    corner = astronaut.copy()
    corner[400:, 400:] = 0
    np.testing.assert_array_equal(warp_face(corner, matrix, 128), warp_face(astronaut, matrix, 128))


def test_padding_outside_the_photo_is_blurred_reflection(astronaut: np.ndarray, astronaut_points: np.ndarray) -> None:
    # cut the photo just left of and above the face: the FFHQ square now leaves it on two sides
    x0, y0 = 175, 70
    cut = np.ascontiguousarray(astronaut[y0:, x0:])
    points = astronaut_points - [x0, y0]
    matrix = alignment_matrix(points, 128)
    padded = warp_face(cut, matrix, 128)
    mirrored = warp_face(cut, matrix, 128, pad=False)
    reference = warp_face(astronaut, alignment_matrix(astronaut_points, 128), 128)
    # which aligned pixels fall outside the photo
    inverse = invert_affine(matrix)
    v, u = np.mgrid[0:128, 0:128]
    photo = np.stack([u, v], -1).reshape(-1, 2) @ inverse[:, :2].T + inverse[:, 2]
    outside = ((photo[:, 0] < -1) | (photo[:, 1] < -1)).reshape(128, 128)
    assert 0.05 < outside.mean() < 0.5
    # away from the blend zone, which reaches 0.1 x the square's side into the photo
    margin = 0.15 * 128 / np.sqrt(np.linalg.det(matrix[:, :2]))
    inside = ((photo[:, 0] > margin) & (photo[:, 1] > margin)).reshape(128, 128)
    # inside the photo: same pixels as aligning the uncut photo
    assert np.abs(padded[inside].astype(int) - reference[inside]).mean() < 2
    # outside: filled (no black), and smoother than a plain mirror image
    assert padded[outside].mean() > 40
    edges_padded = np.abs(cv2.Laplacian(padded, cv2.CV_32F))[outside].mean()
    edges_mirror = np.abs(cv2.Laplacian(mirrored, cv2.CV_32F))[outside].mean()
    assert edges_padded < 0.5 * edges_mirror


def test_face_entirely_outside_the_photo_still_returns_an_image(astronaut: np.ndarray) -> None:
    points = CANONICAL + [900, 900]
    out = warp_face(astronaut, alignment_matrix(points, 128), 128)
    assert out.shape == (128, 128, 3)


def test_bad_input(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="5, 68, 468 or 478"):
        alignment_matrix(np.zeros((7, 2)), 128)
    with pytest.raises(ValueError, match="degenerate"):
        alignment_matrix(np.zeros((5, 2)), 128)
    with pytest.raises(ValueError, match="NaN"):
        alignment_matrix(np.full((5, 2), np.nan), 128)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        warp_face(astronaut, np.eye(3), 128)
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="uint8"):
        warp_face(astronaut.astype(float), alignment_matrix(CANONICAL, 128), 128)


def test_resize_matrix_is_the_alignment_at_another_size():
    from faceage.faces.align import alignment_matrix, resize_matrix

    points = np.array([[38.0, 52.0], [74.0, 50.0], [57.0, 70.0], [42.0, 90.0], [71.0, 89.0]])
    small, big = alignment_matrix(points, 128), alignment_matrix(points, 256)
    np.testing.assert_allclose(resize_matrix(small, 128, 256), big, atol=1e-9)
    np.testing.assert_allclose(resize_matrix(big, 256, 128), small, atol=1e-9)
