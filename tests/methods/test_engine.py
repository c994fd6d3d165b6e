"""The shared aging engine on real photos with the real detector, estimator and verifier."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

import faceage
from faceage.age_groups import check_target_age
from faceage.errors import FaceageError, NoFaceError
from faceage.faces.align import invert_affine, warp_face
from faceage.methods.base import Edit
from faceage.methods.engine import Ager, AgingResult
from faceage.methods.ipcgan import IPCGANMethod


def footprint(shape: tuple[int, ...], matrix: np.ndarray, size: int) -> np.ndarray:
    """Photo pixels the aligned square can reach (plus 2 px of interpolation), bool (H, W)."""
    ones = np.ones((size, size), np.uint8)
    mask = cv2.warpAffine(ones, invert_affine(matrix), (shape[1], shape[0]), flags=cv2.INTER_NEAREST)
    return cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)


@pytest.mark.parametrize("name", ["example", "utkface", "astronaut"])
def test_every_face_is_aged_in_place_and_nothing_else_changes(ager, photos, name):
    rgb = photos[name]
    result = ager.age(rgb, to=70)
    assert isinstance(result, AgingResult)
    assert result.image.shape == rgb.shape and result.image.dtype == np.uint8
    assert result.method == "ipcgan" and result.target_age == result.requested_age == 70 and result.warning is None
    faces = ager.pipeline.process(rgb)
    assert len(result.faces) == len(faces) >= 1
    near = np.zeros(rgb.shape[:2], bool)
    for face in faces:
        near |= footprint(rgb.shape, face.matrix, face.size)
    assert np.array_equal(result.image[~near], rgb[~near])  # far from every face: untouched
    for report, face in zip(result.faces, faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        change = np.abs(result.image[y0:y1, x0:x1].astype(int) - rgb[y0:y1, x0:x1]).mean()
        assert change > 1.0, f"{name}: face {report.index} barely changed ({change:.2f} levels)"
        assert report.box == pytest.approx(tuple(face.box))
        assert 0 <= report.source_age <= 81 and 0 <= report.reached_age <= 81
        assert report.target_age == 70
        assert -1.0 <= report.identity <= 1.0 and isinstance(report.same_person, bool)
        assert 0 < report.ms < 10_000
    assert result.aged_crops.shape == result.source_crops.shape == (len(faces), 128, 128, 3)


def test_reached_age_is_measured_on_the_output_photo(ager, example_rgb):
    result = ager.age(example_rgb, to=15)
    (face,) = ager.pipeline.process(example_rgb)
    view = warp_face(result.image, face.matrix, face.size)
    assert np.array_equal(result.aged_crops[0], view)
    assert np.array_equal(result.source_crops[0], face.image)
    # measured at MEASURE_SIZE (256 px), cut from the output photo with the face's alignment
    from faceage.faces.align import resize_matrix
    from faceage.methods.engine import MEASURE_SIZE

    big = warp_face(result.image, resize_matrix(face.matrix, face.size, MEASURE_SIZE), MEASURE_SIZE)
    assert result.faces[0].reached_age == pytest.approx(float(ager.estimator.estimate_aligned(big[None])[0]))
    expected = ager.verifier.verify(
        ager.verifier.embed_aligned(face.image[None])[0], ager.verifier.embed_aligned(view[None])[0]
    )
    assert result.faces[0].identity == pytest.approx(expected.score, abs=1e-5)
    assert result.faces[0].same_person == expected.accepted
    from faceage.eval.guards import chroma_ratio

    assert result.faces[0].chroma_detail == pytest.approx(float(chroma_ratio(face.image[None], view[None])[0]))
    assert result.to_dict()["faces"][0]["chroma_detail"] == round(result.faces[0].chroma_detail, 3)


def test_several_ages_give_one_result_each_and_match_single_calls(ager, example_rgb):
    results = ager.age(example_rgb, to=[10, 40, 70])
    assert [r.requested_age for r in results] == [10, 40, 70]
    assert len({r.faces[0].source_age for r in results}) == 1  # measured once
    assert not np.array_equal(results[0].image, results[2].image)
    single = ager.age(example_rgb, to=40)  # also: deterministic
    assert np.array_equal(single.image, results[1].image)
    keep = ("source_age", "target_age", "reached_age", "identity", "same_person", "box")
    assert [getattr(single.faces[0], k) for k in keep] == [getattr(results[1].faces[0], k) for k in keep]


def test_one_age_gives_a_result_and_a_sequence_a_list(quick_ager, example_rgb):
    assert isinstance(quick_ager.age(example_rgb, to=np.float32(50)), AgingResult)
    assert isinstance(quick_ager.age(example_rgb, to=np.array(50.0)), AgingResult)
    assert [r.requested_age for r in quick_ager.age(example_rgb, to=np.array([50]))] == [50]


def test_targets_outside_the_method_range_are_clamped_with_a_warning(quick_ager, example_rgb):
    old, young = quick_ager.age(example_rgb, to=[100, 0])
    assert (old.requested_age, old.target_age) == (100, 78) and "78" in old.warning
    assert (young.requested_age, young.target_age) == (0, 5) and old.faces[0].target_age == 78


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (-1, "between 0 and 120 years, got -1"),
        (120.5, "between 0 and 120 years, got 120.5"),
        (math.nan, "finite number of years, got nan"),
        (math.inf, "finite number of years, got inf"),
        ("70", "a number of years, got '70'"),
        (True, "a number of years, got True"),
        (None, "a number of years, got None"),
        ([], "at least one target age"),
    ],
)
def test_bad_targets_are_refused(quick_ager, example_rgb, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        quick_ager.age(example_rgb, to=bad)


def test_check_target_age_names_the_value():
    assert check_target_age(120) == 120.0 and check_target_age(np.int64(3)) == 3.0
    with pytest.raises(ValueError, match="-5"):
        check_target_age(-5)


def test_a_photo_without_a_face_is_a_clear_error(ager):
    with pytest.raises(NoFaceError, match="no face"):
        ager.age(np.full((240, 320, 3), 180, np.uint8), to=60)


def test_without_evaluation_the_photo_is_the_same_and_the_measures_are_empty(ager, quick_ager, example_rgb):
    assert quick_ager.verifier is None
    fast, full = quick_ager.age(example_rgb, to=60), ager.age(example_rgb, to=60)
    assert np.array_equal(fast.image, full.image)
    face = fast.faces[0]
    assert face.reached_age is face.identity is face.same_person is face.chroma_detail is None
    assert face.source_age == full.faces[0].source_age
    assert fast.to_dict()["faces"][0]["reached_age"] is None


class _Direct(IPCGANMethod):
    """The same generator, blended in directly instead of as a change (no reconstruction)."""

    def edit(self, faces, source_ages, target_age):
        return Edit(super().edit(faces, source_ages, target_age).edited)


def test_an_edit_without_reconstruction_is_pasted_whole(quick_ager, tiny_method, example_rgb):
    direct = Ager(
        _Direct(tiny_method.generator, tiny_method.grouping),
        pipeline=quick_ager.pipeline,
        estimator=quick_ager.estimator,
        evaluate=False,
    )
    pasted, delta = direct.age(example_rgb, to=60), quick_ager.age(example_rgb, to=60)
    edited = tiny_method.edit(delta.source_crops, [delta.faces[0].source_age], 60).edited[0]
    centre = slice(48, 80)  # inside the paste mask: the generator's face, not the photo's

    def off(crop):  # mean distance to the generator's output (resampling noisy output costs ~16 levels)
        return np.abs(crop[centre, centre].astype(int) - edited[centre, centre]).mean()

    def from_photo(crop):  # mean distance to the photo's own face
        return np.abs(crop[centre, centre].astype(int) - delta.source_crops[0][centre, centre]).mean()

    assert off(pasted.aged_crops[0]) < 0.4 * off(delta.aged_crops[0])
    # the delta paste is a change on the photo's own face: nearer the photo than the whole-face paste
    assert from_photo(delta.aged_crops[0]) < 0.8 * from_photo(pasted.aged_crops[0])


def test_a_pipeline_of_the_wrong_size_is_refused(ager, tiny_method):
    from faceage.faces.pipeline import FacePipeline

    with pytest.raises(ValueError, match="128"):
        Ager(
            tiny_method,
            pipeline=FacePipeline(size=256, detector=ager.pipeline.detector, landmarks=False),
            estimator=ager.estimator,
            evaluate=False,
        )
    with pytest.raises(TypeError):
        Ager(object())


def test_max_faces_limits_the_faces_aged_and_says_so(quick_ager, tiny_method, astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    both = quick_ager.age(two, to=60)
    assert len(both.faces) == both.faces_found == 2 and both.faces_note is None
    one = Ager(tiny_method, pipeline=quick_ager.pipeline, estimator=quick_ager.estimator, evaluate=False, max_faces=1)
    result = one.age(two, to=60)
    assert len(result.faces) == 1 and result.faces_found == 2
    assert result.faces_note == "aged the 1 largest of 2 faces found"
    assert result.to_dict()["faces_found"] == 2 and result.to_dict()["faces_aged"] == 1


class _Recording(IPCGANMethod):
    """The tiny generator, recording the source ages the engine hands it."""

    seen: list[list[float]] = []

    def edit(self, faces, source_ages, target_age):
        self.seen.append([float(a) for a in source_ages])
        return super().edit(faces, source_ages, target_age)


def test_a_known_age_at_the_photo_is_what_the_method_starts_from(quick_ager, tiny_method, astronaut):
    recording = _Recording(tiny_method.generator, tiny_method.grouping)
    ager = Ager(recording, pipeline=quick_ager.pipeline, estimator=quick_ager.estimator, evaluate=False)
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    plain = ager.age(two, to=60)
    estimates = [face.estimated_age for face in plain.faces]
    assert recording.seen[-1] == pytest.approx(estimates) and {f.source_from for f in plain.faces} == {"estimate"}

    every = ager.age(two, to=60, source_age=8)  # one number: every face's
    assert recording.seen[-1] == [8.0, 8.0]
    assert [(f.given_age, f.source_age, f.source_from) for f in every.faces] == [(8.0, 8.0, "given")] * 2
    assert [f.estimated_age for f in every.faces] == estimates  # the estimate is kept beside it

    first = ager.age(two, to=[30, 60], source_age=[8])  # per face: the rest keep their estimate
    assert recording.seen[-1] == pytest.approx([8.0, estimates[1]])
    assert [f.source_from for f in first[1].faces] == ["given", "estimate"]
    with pytest.raises(FaceageError, match="3 ages at the photo given, but 2 face"):
        ager.age(two, to=60, source_age=[8, 9, 10])
    with pytest.raises(ValueError, match="age at the photo must be between 0 and 120"):
        ager.age(two, to=60, source_age=-3)


def test_every_age_is_measured_on_the_same_256_px_crop(quick_ager, example_rgb):
    """ipcgan ages 128 px crops; the ages it reports are measured at 256 px, as `faceage estimate`."""
    from faceage.faces.pipeline import FacePipeline
    from faceage.methods.engine import MEASURE_SIZE, face_ages

    big = FacePipeline(
        size=MEASURE_SIZE, detector=quick_ager.pipeline.detector, landmarks=quick_ager.pipeline.landmarks
    )
    faces = big.process(example_rgb)
    measured = face_ages(quick_ager.estimator, example_rgb, faces)
    result = quick_ager.age(example_rgb, to=60)
    assert result.faces[0].estimated_age == pytest.approx(measured[0], abs=0.05)


def test_load_builds_an_ager_from_weights(tiny_weights, example_rgb):
    ager = faceage.load("ipcgan", weights=tiny_weights, evaluate=False)
    assert isinstance(ager, Ager) and ager.method.describe()["weights"] == "g.safetensors"
    result = ager.age(example_rgb, to=30)
    assert result.image.shape == example_rgb.shape
    with pytest.raises(FaceageError, match="unknown aging method 'nope'.*ipcgan"):
        faceage.load("nope")


def test_import_faceage_stays_cheap():
    code = "import sys, faceage; assert callable(faceage.load); assert 'torch' not in sys.modules and 'cv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
