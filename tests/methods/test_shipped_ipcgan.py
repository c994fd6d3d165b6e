"""The shipped IPCGAN weights, end to end on the embedded example photo (public domain)."""

from __future__ import annotations

import numpy as np

import faceage
from faceage.assets import EXAMPLE_PHOTO, verify_shipped
from faceage.imageio import load_image
from faceage.methods.registry import available_methods


def test_shipped_ipcgan_ages_the_example_and_keeps_identity():
    verify_shipped("ipcgan_generator.safetensors")  # sha256 matches the manifest
    assert "ipcgan" in available_methods()
    photo = load_image(EXAMPLE_PHOTO)
    young, old = faceage.load("ipcgan").age(photo, to=[10, 70])
    assert young.image.shape == old.image.shape == photo.shape
    (y,), (o,) = young.faces, old.faces
    # the independent estimator reads the older target as clearly older (measured: 15.0 vs 44.4)
    assert o.reached_age > y.reached_age + 10
    assert y.same_person and o.same_person
    # outside the face the photo is untouched
    assert np.array_equal(old.image[-40:], photo[-40:])
