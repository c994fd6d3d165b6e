"""Every registered method, with its shipped weights, end to end on the embedded example photo.

A method enters ``faceage.methods.registry.METHODS`` ready to use: its weights ship and pass the
manifest check, and ``faceage.load(name)`` ages the example photo through the shared engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import faceage
from faceage.assets import EXAMPLE_PHOTO
from faceage.imageio import load_image
from faceage.methods.registry import METHODS, available_methods

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registered_method_ages_the_example_photo(name):
    assert name in available_methods(), f"method {name!r} is registered but its shipped weights are not installed"
    photo = load_image(EXAMPLE_PHOTO)
    ager = faceage.load(name, evaluate=False)
    young, old = ager.age(photo, to=[15, 70])
    for result in (young, old):
        assert result.image.shape == photo.shape and result.image.dtype == np.uint8
        assert len(result.faces) == 1 and result.faces[0].source_age > 0
    x0, y0, x1, y1 = (int(v) for v in old.faces[0].box)
    assert not np.array_equal(young.image[y0:y1, x0:x1], old.image[y0:y1, x0:x1]), "the two ages look the same"
    assert np.array_equal(old.image[-40:], photo[-40:]), "the photo changed outside the face"
    assert old.target_age > young.target_age
    info = ager.method.describe()
    assert info["method"] == name
