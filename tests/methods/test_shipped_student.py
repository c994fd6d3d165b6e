"""The shipped student, end to end through the engine with the artifact guards, its sub-networks
and budget on the shipped weights, and a trainer that resumes from them alone."""

from __future__ import annotations

import numpy as np
import pytest

import faceage
from faceage.assets import EXAMPLE_PHOTO
from faceage.imageio import load_image
from shipped_helpers import channel_spread, gray_example, one_step_from_shipped, verify_shipped_pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ager():
    verify_shipped_pair("student")  # sha256 matches the manifest
    return faceage.load("student")


def test_the_example_ages_and_keeps_the_guards(ager):
    photo = load_image(EXAMPLE_PHOTO)
    young, old = ager.age(photo, to=[10, 75])
    for result in (young, old):
        (face,) = result.faces
        assert face.same_person
        assert face.chroma_detail is not None and face.chroma_detail <= 1.5  # no invented colour noise
        assert np.array_equal(result.image[-40:], photo[-40:])  # outside the head the photo is untouched
    assert np.abs(old.image.astype(int) - young.image.astype(int)).mean() > 0.5  # the two ages differ


def test_a_grayscale_photo_stays_grayscale(ager):
    gray = gray_example()
    result = ager.age(gray, to=70)
    assert channel_spread(result.image).max() <= 2


def test_a_tight_budget_picks_a_smaller_subnetwork(tmp_path, monkeypatch):
    from faceage.methods.registry import load_method

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    roomy = load_method("student", budget_ms="10000")
    tight = load_method("student", budget_ms="1e-6")  # nothing fits: the cheapest, said so
    assert (roomy.resolution, roomy.ratio) == roomy.net.cfg.full
    assert (tight.resolution, tight.ratio) == (64, 0.25) and tight.describe()["budget_met"] is False


def test_training_resumes_from_the_shipped_weights_alone(tiny_pairs, tiny_faces256, tmp_path):
    from faceage.training.student_trainer import WEIGHTS_NAME, StudentTrainOptions, train_student

    one_step_from_shipped(
        WEIGHTS_NAME,
        "Student",
        StudentTrainOptions,
        train_student,
        tmp_path / "run",
        pairs=str(tiny_pairs),
        data=str(tiny_faces256),
        batch=2,
    )
