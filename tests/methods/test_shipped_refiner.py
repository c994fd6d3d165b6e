"""The shipped refiner, end to end as the prototype method's last step, artifact guards included,
and a trainer that resumes from it alone."""

from __future__ import annotations

import numpy as np
import pytest

import faceage
from faceage.assets import EXAMPLE_PHOTO
from faceage.imageio import load_image
from shipped_helpers import channel_spread, gray_example, one_step_from_shipped, verify_shipped_pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agers():
    verify_shipped_pair("refiner")  # sha256 matches the manifest
    return faceage.load("prototype"), faceage.load("prototype", refine=True)


def test_refined_example_keeps_the_person_and_the_guards(agers):
    plain, refined = agers
    photo = load_image(EXAMPLE_PHOTO)
    before = plain.age(photo, to=75)
    after = refined.age(photo, to=75)
    (face,) = after.faces
    assert refined.method.describe()["refine"] is True and face.same_person
    assert face.chroma_detail is not None and face.chroma_detail <= 1.5  # no invented colour noise
    assert np.array_equal(after.image[-40:], photo[-40:])  # outside the head the photo is untouched
    change = np.abs(after.image.astype(int) - before.image.astype(int))
    assert 0 < change.max() and change.mean() < 2.0  # a correction, not a repaint


def test_a_grayscale_photo_stays_grayscale(agers):
    _, refined = agers
    gray = gray_example()
    result = refined.age(gray, to=70)
    assert channel_spread(result.image).max() <= 2


def test_training_resumes_from_the_shipped_weights_alone(tiny_pairs, tiny_faces256, tmp_path):
    from faceage.training.refiner_trainer import WEIGHTS_NAME, RefinerTrainOptions, train_refiner

    one_step_from_shipped(
        WEIGHTS_NAME,
        "Refiner",
        RefinerTrainOptions,
        train_refiner,
        tmp_path / "run",
        pairs=str(tiny_pairs),
        data=str(tiny_faces256),
        batch=4,
        identity_size=64,
    )
