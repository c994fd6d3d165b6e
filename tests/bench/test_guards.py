"""Guards of the aging benchmark: artefact methods fail them, unedited real photos pass them exactly."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.bench.aging import run_aging_benchmark
from faceage.bench.grid import render_grid
from faceage.bench.null_edits import GaussianBlur, JpegReencode, Unchanged
from faceage.eval.guards import (
    channel_spread,
    chroma_ratio,
    face_ellipse_mask,
    gray_copies,
    kid,
    margin_for,
)
from faceage.methods.base import AgingMethod, Edit


class StreakPainter(AgingMethod):
    """Paints thin rainbow streaks across the face, stronger for older targets (what fooled the bench)."""

    name = "streaks"

    def __init__(self, face_size: int) -> None:
        self.face_size = face_size

    def edit(self, faces, source_ages, target_age):
        out = faces.astype(np.int16).copy()
        rows = np.arange(faces.shape[1])[:, None] % 4 == 0
        hue = np.stack([np.sin(np.arange(faces.shape[2]) / 3 + k * 2.1) for k in range(3)], -1) * 24
        out += (rows[..., None] * hue[None, :, :]).astype(np.int16)[None]
        return Edit(np.clip(out, 0, 255).astype(np.uint8))


class ColourShift(AgingMethod):
    """Warms every face: smooth, so no detail guard sees it, but gray faces come out coloured."""

    name = "colour-shift"

    def __init__(self, face_size: int) -> None:
        self.face_size = face_size

    def edit(self, faces, source_ages, target_age):
        return Edit(np.clip(faces.astype(np.int16) + np.array([20, 0, -20], np.int16), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def sample(tiny_data):
    from faceage.bench.aging import read_faces

    return read_faces(tiny_data, "train", 8, seed=0)["images"]


def test_ellipse_lies_inside_the_crop_and_covers_the_face_centre():
    mask = face_ellipse_mask(128)
    assert mask[77, 64] and not mask[5, 5] and not mask[64, 10]
    assert 0.15 < mask.mean() < 0.3
    assert face_ellipse_mask(256).mean() == pytest.approx(mask.mean(), abs=0.01)


def test_chroma_ratio_sees_streaks_not_null_edits(sample):
    assert np.array_equal(chroma_ratio(sample, sample), np.ones(len(sample)))
    assert np.median(chroma_ratio(sample, StreakPainter(96).edit(sample, None, 70).edited)) > 10
    for null in (JpegReencode(96), GaussianBlur(96), ColourShift(96)):
        assert np.median(chroma_ratio(sample, null.edit(sample, None, 70).edited)) < 1.2


def test_gray_copies_are_gray_and_colour_shift_is_not(sample):
    gray = gray_copies(sample)
    assert gray.shape == sample.shape and channel_spread(gray).max() == 0
    assert channel_spread(ColourShift(96).edit(gray, None, 50).edited).min() >= 38
    assert channel_spread(sample).max() > 2


def test_kid_is_zero_ish_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    same, shifted = kid(a, b), kid(a, b + 0.5)
    assert abs(same) < 0.05 * shifted and shifted > 0
    with pytest.raises(ValueError, match="KID needs"):
        kid(a[:1], b)


def test_margin_lets_at_most_the_share_of_each_null_edit_through():
    gains = [np.linspace(-0.1, 0.1, 40), np.linspace(-0.2, 0.05, 40)]
    margin = margin_for(gains, 0.05)
    assert all((g > margin).mean() <= 0.05 for g in gains)
    assert (gains[0] >= margin).sum() == 3  # the smallest such margin: 2 above it, 1 on it
    assert margin_for([np.full(10, -0.1)], 0.05) == 0.0  # never below zero: a loss is no gain


def test_unchanged_real_photos_pass_every_guard_and_equal_the_unedited_baseline(tiny_data):
    from faceage.eval.fid import FeatureExtractor

    result = run_aging_benchmark(
        Unchanged(96),
        tiny_data,
        split="train",
        limit=6,
        log=lambda _: None,
        gray_faces=3,
        reference_cap=8,
        extractor=FeatureExtractor(size=96),
    )
    assert result["guards"] == {"chroma": True, "gray": True, "realism": True, "passed": True}
    scored = 0
    for row in result["groups"].values():
        assert row["age_mean"] == pytest.approx(result["source_age_mean"], abs=1e-5)
        assert row["own_age_mean"] == pytest.approx(result["source_own_age_mean"], abs=1e-5)
        assert row["age_disagreement"] == pytest.approx(result["source_age_disagreement"], abs=1e-5)
        assert row["chroma_median"] == row["chroma_p90"] == 1.0 and row["gray_spread_max"] == 0
        assert row["similarity_mean"] == pytest.approx(1.0, abs=1e-4)
        r = row["realism"]
        if r["fd"] is not None:
            scored += 1
            assert r["fd"] == r["fd_unedited"] and r["kid"] == r["kid_unedited"] and r["fd_floor"] >= 0
    assert scored >= 1


@pytest.mark.parametrize("method, failed", [(StreakPainter, "chroma"), (ColourShift, "gray")])
def test_artefact_methods_fail_the_guards_identity_does_not_catch(tiny_data, method, failed):
    result = run_aging_benchmark(
        method(96), tiny_data, split="train", limit=4, log=lambda _: None, gray_faces=2, realism=False
    )
    assert not result["guards"][failed] and not result["guards"]["passed"]
    assert all(row["identity_rate"] >= 75 for row in result["groups"].values())  # the verifier forgives them


def test_grid_has_the_input_column_and_one_per_target(sample):
    grid = render_grid(Unchanged(96), sample[:3], np.full(3, 30.0), targets=(5, 75), tile=64)
    assert grid.shape == (20 + 3 * 64, 3 * 64, 3) and grid.dtype == np.uint8
    assert np.array_equal(grid[20:84, :64], grid[20:84, 128:])  # unchanged: every column is the input


def test_sample_space_fd_equals_the_covariance_formula():
    from faceage.eval.fid import frechet_distance
    from faceage.eval.guards import fd

    rng = np.random.default_rng(1)
    for m, n, d in ((5, 7, 12), (30, 20, 8)):  # fewer and more samples than dimensions
        x, y = rng.normal(size=(m, d)), rng.normal(0.3, 1.5, size=(n, d))
        expected = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        assert fd(x, y) == pytest.approx(expected, rel=1e-6)
    assert fd(x, x) == pytest.approx(0.0, abs=1e-9)
