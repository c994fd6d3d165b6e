"""faceage.faces.paste: edited faces go back into the photo, inside the face region only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage.faces.align import alignment_matrix, invert_affine, transform_points, warp_face
from faceage.faces.detect import FaceDetector
from faceage.faces.paste import default_mask, feather_mask, paste_back, paste_delta


@pytest.fixture(scope="module")
def aligned(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = FaceDetector().detect(astronaut)[0].points
    matrix = alignment_matrix(points, 128)
    return warp_face(astronaut, matrix, 128), matrix


def _support_in_photo(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Photo pixels whose aligned position has a non-zero mask weight (dilated by 2 px)."""
    h, w = shape[:2]
    weight = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return cv2.dilate((weight > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def test_default_mask() -> None:
    for size in (128, 256, 1024):
        mask = default_mask(size)
        assert mask.shape == (size, size) and mask.dtype == np.float32
        assert mask.min() == 0.0 and mask.max() == 1.0
        assert mask[size // 2, size // 2] == 1.0  # the face centre is fully taken
        assert not mask[[0, -1], :].any() and not mask[:, [0, -1]].any()
        # eyes (47.5 %) and mouth (~70 %) of an FFHQ face are inside the fully-weighted area
        assert mask[int(0.475 * size), int(0.375 * size)] == 1.0
        assert mask[int(0.70 * size), size // 2] == 1.0


def test_feather_mask_stays_inside_the_given_mask() -> None:
    hard = np.zeros((128, 128), bool)
    hard[30:100, 40:90] = True
    soft = feather_mask(hard, feather=12)
    assert soft.dtype == np.float32
    assert not soft[~hard].any()  # never spills outside the region given
    assert soft[65, 65] == pytest.approx(1.0, abs=1e-3)
    assert 0 < soft[30:100, 41].max() < 0.5  # faded near the edge
    np.testing.assert_array_equal(feather_mask(hard, feather=0)[1:-1, 1:-1], hard[1:-1, 1:-1])


def test_paste_of_the_unmodified_face_reproduces_the_photo(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    before = astronaut.copy()
    out = paste_back(astronaut, face, matrix)
    np.testing.assert_array_equal(astronaut, before)  # input untouched
    assert out.shape == astronaut.shape and out.dtype == np.uint8 and out is not astronaut
    support = _support_in_photo(default_mask(128), matrix, astronaut.shape)
    np.testing.assert_array_equal(out[~support], astronaut[~support])  # exact outside
    diff = np.abs(out.astype(int) - astronaut)[support]
    assert diff.mean() < 6  # 128 px face back into a ~250 px face: close, slightly softer
    # and inside the face centre it really is the pasted face
    centre = transform_points(np.array([[63.5, 70.0]]), invert_affine(matrix))[0].astype(int)
    assert support[centre[1], centre[0]]


def test_paste_back_changes_only_the_masked_region(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    green = np.zeros_like(face)
    green[:, :, 1] = 255
    mask = np.zeros((128, 128), bool)
    mask[50:90, 30:100] = True
    out = paste_back(astronaut, green, matrix, mask=mask, feather=8)
    support = _support_in_photo(feather_mask(mask, 8), matrix, astronaut.shape)
    changed = np.any(out != astronaut, axis=2)
    assert changed.any() and not changed[~support].any()
    middle = transform_points(np.array([[65.0, 70.0]]), invert_affine(matrix))[0].round().astype(int)
    assert tuple(out[middle[1], middle[0]]) == (0, 255, 0)
    # an empty mask is a no-op
    np.testing.assert_array_equal(paste_back(astronaut, green, matrix, mask=np.zeros((128, 128))), astronaut)


def test_paste_delta_of_no_change_is_exactly_the_photo(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    out = paste_delta(astronaut, face, face, matrix)
    np.testing.assert_array_equal(out, astronaut)


def test_paste_delta_adds_the_change_and_keeps_the_photo_sharp(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    brighter = np.clip(face.astype(int) + 30, 0, 255).astype(np.uint8)
    out_delta = paste_delta(astronaut, brighter, face, matrix)
    out_back = paste_back(astronaut, brighter, matrix)
    support = _support_in_photo(default_mask(128), matrix, astronaut.shape)
    np.testing.assert_array_equal(out_delta[~support], astronaut[~support])
    # fully weighted face centre: brighter by about the edit
    core = cv2.warpAffine(
        (default_mask(128) == 1).astype(np.uint8), matrix, astronaut.shape[1::-1], flags=cv2.WARP_INVERSE_MAP
    ).astype(bool)
    core &= astronaut.max(axis=2) < 200  # not clipped at white
    gain = (out_delta.astype(int) - astronaut)[core].mean()
    assert 25 < gain <= 30.5

    # detail: the delta result keeps the photo's fine texture, the plain paste loses some of it
    def detail(img: np.ndarray) -> float:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[core].mean())

    assert detail(out_delta) == pytest.approx(detail(astronaut), rel=0.05)
    assert detail(out_back) < 0.85 * detail(astronaut)


def test_paste_into_a_12_megapixel_photo(astronaut: np.ndarray) -> None:
    photo = np.full((3000, 4000, 3), 180, np.uint8)
    photo[1000:1512, 2500:3012] = astronaut
    points = FaceDetector().detect(astronaut)[0].points + [2500, 1000]
    matrix = alignment_matrix(points, 128)
    face = warp_face(photo, matrix, 128)
    edited = 255 - face
    for out in (paste_back(photo, edited, matrix), paste_delta(photo, edited, face, matrix)):
        assert out.shape == photo.shape
        ys, xs = np.nonzero(np.any(out != photo, axis=2))
        # only the face (~100x120 px around x 2680-2770, y 1066-1178) was touched
        assert 2600 < xs.min() and xs.max() < 2860 and 1000 < ys.min() and ys.max() < 1260


def test_face_at_the_photo_edge(astronaut: np.ndarray) -> None:
    cut = np.ascontiguousarray(astronaut[90:, 200:])  # the face is cut by the top-left corner
    faces = FaceDetector().detect(cut)
    assert faces
    matrix = alignment_matrix(faces[0].points, 128)
    face = warp_face(cut, matrix, 128)
    out = paste_back(cut, face, matrix)
    assert out.shape == cut.shape
    assert np.abs(out.astype(int) - cut).mean() < 2


def test_large_aligned_face_into_a_small_photo(astronaut: np.ndarray) -> None:
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    points = FaceDetector().detect(small)[0].points
    matrix = alignment_matrix(points, 1024)
    face = warp_face(small, matrix, 1024)
    out = paste_back(small, face, matrix)
    assert np.abs(out.astype(int) - small).mean() < 2


def test_bad_input(astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]) -> None:
    face, matrix = aligned
    with pytest.raises(ValueError, match="square"):
        paste_back(astronaut, face[:100], matrix)
    with pytest.raises(ValueError, match="mask"):
        paste_back(astronaut, face, matrix, mask=np.ones((64, 64)))
    with pytest.raises(ValueError, match="differ"):
        paste_delta(astronaut, face, face[:64, :64], matrix)
    with pytest.raises(ValueError, match="uint8"):
        paste_back(astronaut.astype(np.float32), face, matrix)


def test_out_parameter_pastes_several_faces_with_one_copy(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    edited = 255 - face
    expected = paste_delta(paste_back(astronaut, edited, matrix), edited, face, matrix)
    result = astronaut.copy()
    assert paste_back(result, edited, matrix, out=result) is result
    assert paste_delta(result, edited, face, matrix, out=result) is result
    np.testing.assert_array_equal(result, expected)
    target = np.zeros_like(astronaut)
    np.testing.assert_array_equal(
        paste_back(astronaut, edited, matrix, out=target), paste_back(astronaut, edited, matrix)
    )
    with pytest.raises(ValueError, match="out"):
        paste_back(astronaut, edited, matrix, out=np.zeros((10, 10, 3), np.uint8))


def test_add_in_gamut_shortens_the_delta_instead_of_clipping_channels() -> None:
    from faceage.faces.paste import add_in_gamut

    base = np.array([[[250, 200, 100], [120, 120, 120], [10, 20, 30]]], np.uint8)
    delta = np.array([[[20.0, 20.0, 20.0], [200.0, 200.0, 200.0], [0.0, 0.0, 0.0]]], np.float32)
    out = add_in_gamut(base, delta).astype(int)
    # a brightening that would clip R alone is shortened to 5 levels: the colour differences survive
    assert out[0, 0].tolist() == [255, 205, 105]
    # a gray pixel stays gray however far it is pushed; a zero delta is exact
    assert out[0, 1].tolist() == [255, 255, 255] and out[0, 2].tolist() == [10, 20, 30]
    # in range, it is the plain rounded sum
    assert (
        add_in_gamut(base, np.full(base.shape, -2.4, np.float32)).astype(int).tolist()
        == (base.astype(int) - 2).tolist()
    )


def test_paste_delta_keeps_a_grayscale_photo_grayscale(
    astronaut: np.ndarray, aligned: tuple[np.ndarray, np.ndarray]
) -> None:
    face, matrix = aligned
    gray = np.repeat(astronaut.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    brighter = np.clip(face.astype(int) + 90, 0, 255).astype(np.uint8)
    lum = np.repeat(brighter.mean(-1, keepdims=True).astype(np.uint8), 3, -1)  # a gray (luma-only) change
    out = paste_delta(
        gray, lum, np.repeat(face.mean(-1, keepdims=True).astype(np.uint8), 3, -1), matrix, keep_gamut=True
    )
    assert not np.array_equal(out, gray)
    spread = out.max(-1).astype(int) - out.min(-1)
    assert spread.max() <= 1
