"""The steps of the prototype method one by one: fold-free shape, grey strands, beard removal,
the target loop, and the collection-flow detail of the builder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage.faces import mesh
from faceage.methods.prototype import beard, hair, shape
from faceage.training.sharp_detail import collection_average


def smooth_field(grid: int, amplitude: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.normal(size=(grid, grid, 2)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), grid / 10)
    return field * (amplitude / np.abs(field).max())


def test_exponential_never_folds_where_a_direct_warp_does():
    size, grid = 256, shape.FLOW_GRID
    v = smooth_field(grid, 40.0)
    identity = mesh.grid_points(grid, size).reshape(grid, grid, 2).astype(np.float32)
    assert mesh.min_jacobian(identity - v, size) < 0  # applied directly, this field folds
    assert mesh.min_jacobian(shape.exponential(-v, size), size) > 0.0


def test_exponential_of_zero_is_identity_and_minus_inverts():
    size, grid = 256, 64
    identity = mesh.grid_points(grid, size).reshape(grid, grid, 2).astype(np.float32)
    assert np.allclose(shape.exponential(np.zeros((grid, grid, 2), np.float32), size), identity)
    v = smooth_field(grid, 12.0, seed=1)
    forward = shape.exponential(v, size)
    backward = shape.exponential(-v, size)
    # backward(forward(x)) == x, away from the border
    there = shape.sample_map(backward, forward.reshape(-1, 2), size).reshape(grid, grid, 2)
    inner = slice(8, -8)
    assert np.abs(there[inner, inner] - identity[inner, inner]).max() < 0.6


def test_shape_change_moves_landmarks_by_the_delta(faces_with_landmarks):
    image, landmarks = faces_with_landmarks
    delta = np.zeros_like(landmarks)
    delta[152] = (0.0, 6.0)  # chin down
    delta[:, 1] += np.where(landmarks[:, 1] > landmarks[1, 1], 3.0, 0.0)  # lower face longer
    change = shape.shape_change(landmarks, delta, 1.0, 256)
    moved = change.moved_landmarks(1.0)
    # smoothing spreads the change: most of it arrives, in the right direction
    assert moved[152, 1] - landmarks[152, 1] > 3.0
    assert abs(moved[1, 0] - landmarks[1, 0]) < 1.0
    assert change.displacement_share(0.0) == 0.0 < change.displacement_share(1.0) < change.displacement_share(2.0)
    assert np.array_equal(change.backward(0.0), mesh.identity_map(256))


def test_cranium_follows_the_norms_when_aging_and_a_quarter_of_them_when_rejuvenating():
    assert shape.cranium_scale(5, 30) == pytest.approx(1.0 / 1.24)  # the norm: 1.24 at 5, 1.0 from 18
    assert shape.cranium_scale(40, 70) == 1.0
    assert 1.04 < shape.cranium_scale(30, 5) < 1.07 and shape.cranium_scale(30, 5) > shape.cranium_scale(30, 15) >= 1.0


def test_grey_strands_keep_texture_and_touch_only_hair():
    rng = np.random.default_rng(0)
    ycc = np.full((256, 256, 3), 128.0, np.float32)
    strands = cv2.GaussianBlur(rng.normal(0, 20, (256, 256)).astype(np.float32), (0, 0), 0.8)
    ycc[..., 0] = 50.0 + strands  # dark, textured hair
    ycc[..., 1] += 12.0  # brownish
    hair_w = np.zeros((256, 256), np.float32)
    hair_w[:100] = 1.0
    assert np.array_equal(hair.grey_strands(ycc, hair_w, 0.0), ycc)
    out = hair.grey_strands(ycc, hair_w, 0.6)
    assert np.array_equal(out[150:], ycc[150:])  # nothing outside the hair changes
    top_in, top_out = ycc[:100, :, 0], out[:100, :, 0]
    assert top_out.mean() > top_in.mean() + 30  # lighter: grey
    fine_in = top_in - cv2.GaussianBlur(top_in, (0, 0), 1.5)
    fine_out = top_out - cv2.GaussianBlur(top_out, (0, 0), 1.5)
    assert fine_out.std() > 0.8 * fine_in.std()  # strands kept, not a flat cap
    assert np.abs(out[:100, :, 1] - 128).mean() < np.abs(ycc[:100, :, 1] - 128).mean()  # less colour
    assert hair.grey_share(30, 75) > hair.grey_share(30, 55) > 0 == hair.grey_share(70, 20)


def test_grey_hair_darkens_when_rejuvenating_and_coloured_hair_does_not():
    rng = np.random.default_rng(1)
    ycc = np.full((256, 256, 3), 128.0, np.float32)
    strands = cv2.GaussianBlur(rng.normal(0, 15, (256, 256)).astype(np.float32), (0, 0), 0.8)
    ycc[..., 0] = 170.0 + strands  # light grey hair on the left, ...
    ycc[:, 128:, 0] = 150.0 + strands[:, 128:]
    ycc[:, 128:, 1] += 20.0  # ... red hair on the right
    hair_w = np.zeros((256, 256), np.float32)
    hair_w[:100] = 1.0
    assert hair.darkening_share(30, 70) == 0.0 < hair.darkening_share(60, 30) < hair.darkening_share(80, 20) <= 1.0
    assert np.array_equal(hair.darken_grey(ycc, hair_w, 0.0), ycc)
    out = hair.darken_grey(ycc, hair_w, 1.0)
    assert np.array_equal(out[150:], ycc[150:])  # nothing outside the hair changes
    assert out[:100, 10:110, 0].mean() < ycc[:100, 10:110, 0].mean() - 60  # the grey is dark now
    assert np.allclose(out[:100, 150:, 1:], ycc[:100, 150:, 1:], atol=0.5)  # coloured hair keeps its colour
    fine_in = ycc[:100, 10:110, 0] - cv2.GaussianBlur(ycc[:100, 10:110, 0], (0, 0), 1.5)
    fine_out = out[:100, 10:110, 0] - cv2.GaussianBlur(out[:100, 10:110, 0], (0, 0), 1.5)
    assert fine_out.std() > 0.4 * fine_in.std()  # strands kept (fainter on dark hair), not a flat cap


def test_beard_goes_only_for_young_targets(faces_with_landmarks):
    image, landmarks = faces_with_landmarks
    assert beard.removal_amount(35, 30) == 0.0 and beard.removal_amount(10, 5) == 0.0
    assert beard.removal_amount(35, 8) == 1.0 and 0.0 < beard.removal_amount(35, 14) < 1.0
    assert beard.removal_amount(35, 8, male=0.3) == 0.0  # women keep their lower face
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    lower = np.zeros(image.shape[:2], np.float32)
    chin = np.round(landmarks[152]).astype(int)
    top = int(landmarks[2, 1]) + 8
    lower[top : chin[1], chin[0] - 30 : chin[0] + 30] = 1.0
    dark = ycc.copy()
    dark[top + 10 : chin[1] - 5, chin[0] - 20 : chin[0] + 20, 0] -= 45.0  # a beard-dark patch
    mask = beard.beard_mask(dark, lower, np.zeros(lower.shape, bool), landmarks)
    assert mask[top + 20, chin[0]] > 0.5 and mask[: top - 20].max() < 0.01
    assert np.abs(np.diff(mask, axis=0)).max() < 0.1  # a soft edge, no line along the jaw
    out = beard.remove_beard(dark, mask, 1.0, np.ones(lower.shape, np.float32))
    patch = (slice(top + 15, chin[1] - 10), slice(chin[0] - 15, chin[0] + 15))
    assert out[patch][..., 0].mean() > dark[patch][..., 0].mean() + 10  # filled from the skin around (of 45 dark)


def test_collection_flow_sharpens_an_average_of_shifted_faces():
    rng = np.random.default_rng(0)
    base = np.zeros((128, 128), np.float32)
    for _ in range(12):  # a few crisp "folds"
        x0, y0, x1, y1 = rng.integers(20, 108, 4)
        cv2.line(base, (int(x0), int(y0)), (int(x1), int(y1)), 60.0, 2)
    base = 100.0 + cv2.GaussianBlur(base, (0, 0), 0.7)
    faces = []
    for _ in range(24):
        dx, dy = rng.uniform(-3, 3, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        faces.append(np.clip(cv2.warpAffine(base, m, (128, 128), borderMode=cv2.BORDER_REFLECT), 0, 255))
    faces = np.stack(faces).astype(np.uint8)

    def sharpness(img: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(img, cv2.CV_32F))[16:-16, 16:-16].mean())

    plain, sharp = collection_average(faces, 0), collection_average(faces, 3)
    assert sharpness(sharp) > 1.3 * sharpness(plain)
    assert sharpness(sharp) <= 1.2 * sharpness(base)


@pytest.fixture(scope="module")
def faces_with_landmarks(tiny_faces256):
    from faceage.data.shards import decode_landmarks, iter_shard, read_index

    for info in read_index(tiny_faces256, "train"):
        for _, rgb, labels in iter_shard(tiny_faces256 / info.name):
            if 25 <= float(labels["age"]) <= 50:
                return np.asarray(rgb), decode_landmarks(labels)
    raise AssertionError("no adult face in the tiny folder")


class LinearJudges:
    """Judges of a synthetic edit: a rendered face's pixel value is the strength x 10, the regressor
    reads ``bias + source + years_per_strength x strength`` from it (``bias`` is its error on this
    face), and identity falls linearly with the strength. Same interface as ``loop.OwnJudges``."""

    def __init__(self, source: float, bias: float, years_per_strength: float, identity_slope: float = 0.1):
        self.source, self.bias, self.rate, self.slope = source, bias, years_per_strength, identity_slope
        self.guard_limit = np.inf  # strengths above it fail the artifact guard

    @staticmethod
    def strength_of(face: np.ndarray) -> float:
        return float(face.mean()) / 10.0

    def ages(self, faces: list[np.ndarray]) -> np.ndarray:
        return np.array([self.source + self.bias + self.rate * self.strength_of(f) for f in faces])

    def similarity(self, reference: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
        return np.array([1.0 - self.slope * self.strength_of(f) for f in faces])

    def clean(self, reference: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
        return np.array([self.strength_of(f) <= self.guard_limit for f in faces])


def render_strength(strength: float) -> np.ndarray:
    return np.full((8, 8, 3), strength * 10.0, np.float32)


@pytest.mark.parametrize("bias", [-15.0, 0.0, 20.0])
def test_target_loop_reads_the_edit_relative_to_the_input(bias):
    from faceage.methods.prototype import loop

    # 10 years per unit of strength: 30 -> 50 needs strength 2, whatever the regressor's offset
    judges = LinearJudges(source=30.0, bias=bias, years_per_strength=10.0)
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 50.0, judges)
    assert chosen.reached and not chosen.limited_by_identity
    assert abs(chosen.own_age - 50.0) <= loop.TOLERANCE
    assert abs(chosen.offset - bias) < 1e-6
    assert 1.7 <= chosen.strength <= 2.2


def test_target_loop_steps_down_to_the_identity_floor_and_says_so():
    from faceage.methods.prototype import loop

    # identity 1 - 0.3 x strength: only strengths <= 1.83 keep it above the 0.45 floor
    judges = LinearJudges(source=30.0, bias=0.0, years_per_strength=5.0, identity_slope=0.3)
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 60.0, judges)
    assert chosen.limited_by_identity and not chosen.reached
    assert chosen.identity is not None and chosen.identity >= loop.IDENTITY_FLOOR
    assert chosen.strength == pytest.approx(1.7)


def test_target_loop_out_of_reach_takes_the_nearest_and_reports_it():
    from faceage.methods.prototype import loop

    judges = LinearJudges(source=30.0, bias=5.0, years_per_strength=2.0, identity_slope=0.0)
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 80.0, judges)
    assert not chosen.reached and not chosen.limited_by_identity
    assert chosen.strength == pytest.approx(max(loop.CANDIDATES))


def test_rejuvenation_shape_gain_grows_toward_child_targets_only():
    assert shape.younger_gain(30.0, 40.0) == 1.0  # aging: the plain prototype difference
    assert shape.younger_gain(60.0, 25.0) == 1.0  # adult targets too
    assert shape.younger_gain(30.0, 5.0) == max(shape.YOUNGER_GAIN)
    gains = [shape.younger_gain(40.0, t) for t in (20.0, 17.0, 14.0, 11.0, 10.0)]
    assert gains == sorted(gains) and gains[0] == 1.0 and gains[-1] == max(shape.YOUNGER_GAIN)


def test_target_loop_goes_as_far_as_allowed_when_the_regressor_cannot_tell_candidates_apart():
    from faceage.methods.prototype import loop

    # rejuvenating 30 -> 10: the regressor reads every candidate ~20 years too old and a shade older
    # with strength (noise, under the tolerance): the strongest candidate, not the weakest
    blind = LinearJudges(source=30.0, bias=0.0, years_per_strength=0.5, identity_slope=0.0)
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 10.0, blind)
    assert not chosen.reached and chosen.strength == pytest.approx(max(loop.CANDIDATES))
    # a regressor that clearly reads the stronger edits older keeps the nearest, the weakest
    seeing = LinearJudges(source=30.0, bias=0.0, years_per_strength=5.0, identity_slope=0.0)
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 10.0, seeing)
    assert not chosen.reached and chosen.strength == pytest.approx(min(loop.CANDIDATES))


def test_target_loop_stops_below_the_first_strength_that_fails_the_artifact_guard():
    from faceage.methods.prototype import loop

    judges = LinearJudges(source=30.0, bias=0.0, years_per_strength=10.0, identity_slope=0.0)
    judges.guard_limit = 1.5  # 1.7 and stronger paint colour speckle
    chosen = loop.choose_strength(render_strength, render_strength(0.0), 30.0, 60.0, judges)
    assert chosen.limited_by_guard and not chosen.reached and chosen.strength <= 1.5


def test_own_judges_guard_passes_a_copy_and_fails_colour_speckle():
    from faceage.methods.prototype import loop

    rng = np.random.default_rng(0)
    face = np.full((64, 64, 3), (180, 140, 120), np.uint8)
    speckled = face.astype(np.int16)
    speckled[..., 0] += rng.integers(-40, 40, size=(64, 64)).astype(np.int16)
    speckled = np.clip(speckled, 0, 255).astype(np.uint8)
    assert loop.OwnJudges().clean(face, [face.copy(), speckled]).tolist() == [True, False]


def test_a_photo_with_little_colour_takes_little_colour_change():
    from faceage.methods.prototype import colour

    face = np.ones((64, 64), np.float32)
    skin = np.dstack([np.full((64, 64), 150.0), np.full((64, 64), 150.0), np.full((64, 64), 110.0)])
    sepia = np.dstack([np.full((64, 64), 150.0), np.full((64, 64), 130.0), np.full((64, 64), 126.0)])
    gray = np.dstack([np.full((64, 64), 150.0), np.full((64, 64), 128.0), np.full((64, 64), 128.0)])
    assert colour.chroma_scale(skin.astype(np.float32), face) == 1.0
    assert colour.chroma_scale(gray.astype(np.float32), face) == 0.0
    assert colour.chroma_scale(sepia.astype(np.float32), face) == 0.0  # 4 levels of colour: a tint
    assert colour.chroma_scale(skin.astype(np.float32), np.zeros((64, 64), np.float32)) == 1.0


def test_a_childs_hair_reach_extends_the_adults_within_the_segmenters_hair(shared_datasets):
    from faceage.faces.pipeline import FacePipeline
    from faceage.imageio import load_image
    from faceage.methods.prototype.regions import RegionFinder

    # a girl of 2 with a black fringe: her hair reaches further above the face than an adult's
    aligned = FacePipeline(size=256).align_one(load_image(shared_datasets / "aaf" / "images" / "00000A02.jpg"))
    finder = RegionFinder()
    adult = finder.find(aligned.image, aligned.landmarks, True, True).hair
    child = finder.find(aligned.image, aligned.landmarks, True, True, shape.cranium_ratio(2.0)).hair
    assert shape.cranium_ratio(2.0) > 1.0 == shape.cranium_ratio(30.0)
    assert (child >= adult - 1e-6).all() and child.sum() > 1.05 * adult.sum()
    hair_near = cv2.dilate(
        finder.semantic(aligned.image, aligned.landmarks)["hair"].astype(np.uint8), np.ones((13, 13))
    )
    assert child[hair_near == 0].max() < 0.05  # never outside the segmenter's hair
