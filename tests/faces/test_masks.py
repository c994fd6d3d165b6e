"""Person segmentation and semantic face masks, on real photos with the real models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage.faces import landmarks as face_landmarks
from faceage.faces import masks as fm
from faceage.faces.landmarks import region_polygons
from faceage.faces.masks import MASK_NAMES, combine, face_masks, inpaint_non_age, mask_overlay, non_age_mask
from faceage.faces.pipeline import FacePipeline
from faceage.faces.segment import PersonSegmenter

AAF_WITH_HAIR = "06000A46.jpg"  # a woman, 46, dark hair pulled back from a high forehead
AAF_FRINGE = "00000A02.jpg"  # a girl, 2, black fringe down to the brows, red cap
AAF_BALD = "12581A57.jpg"  # a man, 57, bald on top, grey hair at the sides
UTK_FACE = "25_0_0_20170104011300160.jpg.chip.jpg"
DISJOINT = ("skin", "eyes", "brows", "lips", "hair", "background")


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(size=256)


def _read(path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def faces(pipeline, astronaut, shared_datasets) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Faces aligned by the project's pipeline at 256 px, with their landmarks: name -> (image, landmarks)."""
    photos = {"astronaut": astronaut, "utk": _read(shared_datasets / "utkface" / "images" / UTK_FACE)}
    for name, file in (("aaf", AAF_WITH_HAIR), ("fringe", AAF_FRINGE), ("bald", AAF_BALD)):
        photos[name] = _read(shared_datasets / "aaf" / "images" / file)
    out = {}
    for name, photo in photos.items():
        face = pipeline.align_one(photo, name)
        assert face.landmarks is not None, name
        out[name] = (face.image, face.landmarks)
    return out


@pytest.fixture(scope="module")
def segmenter() -> PersonSegmenter:
    return PersonSegmenter()


@pytest.fixture(scope="module")
def computed(faces, segmenter):
    """name -> (image, landmarks, person probability, masks)."""
    out = {}
    for name, (image, points) in faces.items():
        person = segmenter.predict(image)
        out[name] = (image, points, person, face_masks(image, points, person))
    return out


def _oval(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return fm._fill(image.shape[:2], region_polygons(points, "face_oval"))


def _pixels(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], axis=1).astype(np.float64)


def _centroid(mask: np.ndarray) -> np.ndarray:
    return _pixels(mask).mean(axis=0)


# --- segmenter ------------------------------------------------------------------------------------


def test_segmenter_on_person_and_blank(segmenter, astronaut, computed):
    prob = segmenter.predict(astronaut)
    assert prob.dtype == np.float32 and prob.shape == astronaut.shape[:2]
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    # The astronaut's face (rows 70-180, columns 180-270) is person; the black sky top-right is not.
    assert prob[80:170, 190:260].mean() > 0.95
    assert prob[0:60, 400:512].mean() < 0.05
    # On aligned faces with real surroundings the segmenter agrees with the landmarks. (Not on the
    # UTKFace crop: it is so tight that alignment pads it with blurred mirror images.)
    for name in ("astronaut", "aaf", "fringe", "bald"):
        image, points, person, _ = computed[name]
        assert person[_oval(image, points)].mean() > 0.9, name
    for blank in (np.full((256, 256, 3), 128, np.uint8), np.full((120, 300, 3), 255, np.uint8)):
        assert segmenter.predict(blank).max() < 0.05


def test_segmenter_batch_and_determinism(faces):
    image = faces["astronaut"][0]
    one = PersonSegmenter(num_threads=2)
    first = one.predict(image)
    assert np.array_equal(first, one.predict(image))
    batch = one.predict(np.stack([image, image[::-1].copy()]))
    assert batch.shape == (2, *image.shape[:2]) and np.array_equal(batch[0], first)
    assert np.allclose(PersonSegmenter(num_threads=1).predict(image), first, atol=1e-4)


def test_segmenter_rejects_bad_input(segmenter):
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        segmenter.predict(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        segmenter.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="num_threads"):
        PersonSegmenter(num_threads=0)


# --- masks ----------------------------------------------------------------------------------------


def test_masks_shapes_dtypes_at_two_sizes(faces, segmenter):
    image, points = faces["astronaut"]
    for size in (128, 256):
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        scaled = (points + 0.5) * (size / image.shape[0]) - 0.5
        masks = face_masks(small, scaled, segmenter=segmenter)
        assert tuple(masks) == MASK_NAMES
        for name, mask in masks.items():
            assert mask.dtype == bool and mask.shape == (size, size), name
            assert mask.any(), name


def test_masks_are_consistent(computed):
    for name, (image, points, person, masks) in computed.items():
        for i, a in enumerate(DISJOINT):
            for b in DISJOINT[i + 1 :]:
                assert not (masks[a] & masks[b]).any(), (name, a, b)
        assert not (masks["nose"] & ~masks["skin"]).any(), name
        oval = _oval(image, points)
        # Background is the complement of the person, where the face oval always counts as person.
        assert np.array_equal(masks["background"], ~((person >= 0.5) | oval)), name
        # Without refinement the face classes tile the oval exactly.
        plain = face_masks(image, points, person, refine=False)
        face = ("skin", "eyes", "brows", "lips")
        assert np.array_equal(combine(plain, face), oval), name
        # Refinement only trades pixels between skin and hair, and only above the brows.
        assert np.array_equal(combine(masks, (*face, "hair")), combine(plain, (*face, "hair"))), name
        moved = masks["skin"] ^ plain["skin"]
        assert np.array_equal(moved, masks["hair"] ^ plain["hair"]), name
        up = points[fm.FOREHEAD] - points[fm.CHIN]
        if moved.any():
            regions = face_landmarks.REGION_INDICES
            brows = points[list(regions["left_brow"] + regions["right_brow"])]
            assert (_pixels(moved) @ up).min() > (brows @ up).max(), name
        # Whatever is in no class is person below the mouth line (neck, clothes).
        rest = ~combine(masks, DISJOINT)
        if rest.any():
            mouth = points[list(fm.MOUTH_CORNERS)].mean(axis=0)
            assert (_pixels(rest) @ up).max() <= mouth @ up, name


def test_hairline_refinement_finds_fringe_and_forehead(computed):
    # The girl's black fringe covers the top of the face oval: it is hair, not skin.
    image, points, _, masks = computed["fringe"]
    oval = _oval(image, points)
    fringe = masks["hair"] & oval
    assert fringe.sum() > 0.05 * oval.sum()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    assert np.median(gray[fringe]) < np.median(gray[masks["skin"]]) - 40
    # The woman's hair is pulled back from a high forehead: the forehead above the oval is skin,
    # and it looks like skin, not like her hair.
    image, points, _, masks = computed["aaf"]
    forehead = masks["skin"] & ~_oval(image, points)
    assert forehead.sum() > 0.03 * masks["skin"].sum()
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    skin_colour = np.median(lab[masks["skin"] & ~forehead], axis=0)
    hair_colour = np.median(lab[masks["hair"]], axis=0)
    to_skin = np.linalg.norm(lab[forehead] - skin_colour, axis=1)
    assert (to_skin < np.linalg.norm(lab[forehead] - hair_colour, axis=1)).mean() > 0.9
    # A bald scalp above the oval is skin too (grey hair at the sides stays hair).
    image, points, _, masks = computed["bald"]
    assert (masks["skin"] & ~_oval(image, points)).sum() > 0.1 * masks["skin"].sum()
    assert masks["hair"].sum() > 0.05 * masks["hair"].size


def test_face_regions_are_where_faces_have_them(computed):
    for name, (_, _, _, masks) in computed.items():
        eyes, brows, nose, lips = (_centroid(masks[k]) for k in ("eyes", "brows", "nose", "lips"))
        assert brows[1] < eyes[1] < nose[1] < lips[1], name
        sizes = {k: masks[k].sum() for k in ("skin", "eyes", "brows", "lips", "nose")}
        assert max(sizes, key=sizes.get) == "skin", (name, sizes)
        assert sizes["skin"] > 0.5 * sum(sizes.values()), (name, sizes)


def test_hair_found_above_the_face(computed):
    for name in ("astronaut", "aaf"):
        image, _, _, masks = computed[name]
        hair = masks["hair"]
        assert hair.mean() > 0.05, name
        assert _centroid(hair)[1] < _centroid(masks["eyes"])[1], name
        # Hair is darker than skin in both photos (brown and black hair).
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        assert np.median(gray[hair]) < np.median(gray[masks["skin"]]) - 20, name


def test_masks_are_deterministic(faces, segmenter):
    image, points = faces["aaf"]
    a = face_masks(image, points, segmenter=segmenter)
    b = face_masks(image.copy(), points.copy(), segmenter=segmenter)
    c = face_masks(image, points)  # the process-wide default segmenter
    assert all(np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]) for k in MASK_NAMES)


def test_masks_follow_the_face_when_transposed(computed):
    # Transposing image, landmarks and person mask (x <-> y) is a reflection through the diagonal:
    # the face lies on its side, so "above the mouth" must follow the face, not the image rows.
    image, points, person, masks = computed["astronaut"]
    flipped = face_masks(image.transpose(1, 0, 2).copy(), points[:, ::-1].copy(), person.T.copy())
    for name in MASK_NAMES:
        a, b = masks[name], flipped[name].T
        assert (a ^ b).sum() <= 0.02 * max(a.sum(), 1) + 4, name


def test_non_age_mask_and_combine(computed):
    _, _, _, masks = computed["aaf"]
    region = non_age_mask(masks)
    assert np.array_equal(region, masks["hair"] | masks["background"])
    assert np.array_equal(combine(masks, "hair"), masks["hair"])
    assert not combine(masks, ()).any()
    grown = non_age_mask(masks, grow=3)
    assert (grown >= region).all() and grown.sum() > region.sum()
    with pytest.raises(ValueError, match="glasses"):
        combine(masks, ("glasses",))
    with pytest.raises(ValueError, match="grow"):
        non_age_mask(masks, grow=-1)


def test_inpainting_changes_only_masked_pixels(computed):
    image, _, _, masks = computed["astronaut"]
    region = non_age_mask(masks)
    filled = inpaint_non_age(image, region)
    assert filled.shape == image.shape and filled.dtype == np.uint8
    assert np.array_equal(filled[~region], image[~region])
    changed = (filled != image).any(axis=2)
    assert changed[region].mean() > 0.5
    # Hair is filled from its surroundings: far less texture than before.
    before = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    after = cv2.Laplacian(cv2.cvtColor(filled, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    assert np.abs(after[masks["hair"]]).mean() < 0.5 * np.abs(before[masks["hair"]]).mean()
    assert np.array_equal(inpaint_non_age(image, np.zeros(image.shape[:2], bool)), image)


def test_overlay(computed):
    image, _, _, masks = computed["astronaut"]
    out = mask_overlay(image, masks)
    assert out.shape == image.shape and out.dtype == np.uint8
    below_legend = np.zeros(image.shape[:2], bool)
    below_legend[image.shape[0] // 2 :] = True  # the legend sits in the top-left corner
    for name in ("skin", "lips", "background"):
        where = masks[name] & below_legend
        assert (out[where] != image[where]).any(axis=1).mean() > 0.9, name
    only_lips = mask_overlay(image, {"lips": masks["lips"]}, legend=False)
    assert np.array_equal(only_lips[~masks["lips"]], image[~masks["lips"]])
    assert np.array_equal(mask_overlay(image, masks, alpha=0.0, legend=False), image)
    with pytest.raises(ValueError, match="glasses"):
        mask_overlay(image, {"glasses": masks["lips"]})


def test_bad_inputs_raise_value_error_naming_what_was_got(faces):
    image, points = faces["utk"]
    person = np.ones(image.shape[:2], np.float32)
    with pytest.raises(ValueError, match=r"\(256, 256\)"):
        face_masks(image[..., 0], points, person)
    with pytest.raises(ValueError, match="float64"):
        face_masks(image.astype(np.float64), points, person)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        face_masks(image, points[:68], person)
    with pytest.raises(ValueError, match="NaN"):
        face_masks(image, np.full_like(points, np.nan), person)
    with pytest.raises(ValueError, match=r"\(100, 100\)"):
        face_masks(image, points, person[:100, :100])
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        inpaint_non_age(image, np.zeros((5, 5), bool))
