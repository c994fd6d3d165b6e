"""Method `prototype` on real aligned faces, with prototypes built by the real builder."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.data.shards import decode_landmarks, iter_shard, read_index
from faceage.methods.base import Edit
from faceage.methods.prototype import PrototypeMethod, cranium_scale
from faceage.methods.prototype.colour import age_chain as _age_chain


@pytest.fixture(scope="module")
def method(tiny_prototypes) -> PrototypeMethod:
    return PrototypeMethod(tiny_prototypes)


@pytest.fixture(scope="module")
def faces(tiny_faces256):
    out = []
    for info in read_index(tiny_faces256, "train"):
        for _, rgb, labels in iter_shard(tiny_faces256 / info.name):
            out.append((rgb, decode_landmarks(labels), float(labels["age"])))
    adult = [f for f in out if 25 <= f[2] <= 45][:2]
    return np.stack([f[0] for f in adult]), np.stack([f[1] for f in adult]), np.array([f[2] for f in adult])


def colour_noise(rgb: np.ndarray) -> float:
    """High-frequency chroma energy: what streak-painting methods raise."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)[64:200, 64:192, 1:]
    return float(((ycc - cv2.GaussianBlur(ycc, (0, 0), 1.5)) ** 2).mean())


def test_edit_returns_faces_flow_and_masks(method, faces):
    images, points, ages = faces
    edit = method.edit(images, ages, 75.0, points)
    assert isinstance(edit, Edit)
    n = len(images)
    assert edit.edited.shape == images.shape and edit.edited.dtype == np.uint8
    assert edit.reconstructed.shape == images.shape
    assert edit.flow.shape == (n, 256, 256, 2) and edit.mask.shape == (n, 256, 256)
    assert 0.0 <= edit.mask.min() and edit.mask.max() <= 1.0
    assert len(edit.warnings) == n
    # aging changes the face, and more than it changes the corners of the square
    change = np.abs(edit.edited.astype(int) - images.astype(int))
    assert change[:, 80:200, 70:186].mean() > 1.0
    assert change[:, :20, :20].mean() < change[:, 80:200, 70:186].mean()


def test_edit_is_deterministic(method, faces):
    images, points, ages = faces
    a = method.edit(images, ages, 10.0, points)
    b = method.edit(images, ages, 10.0, points)
    assert np.array_equal(a.edited, b.edited) and np.array_equal(a.flow, b.flow)


def test_zero_strength_changes_nothing(tiny_prototypes, faces):
    images, points, ages = faces
    still = PrototypeMethod(tiny_prototypes, strength=0.0, hair=False)
    edit = still.edit(images, ages, 80.0, points)
    assert np.abs(edit.flow).max() == 0.0
    assert np.abs(edit.edited.astype(int) - images.astype(int)).max() <= 1  # YCrCb round trip only


def test_same_age_is_almost_no_change(method, faces):
    images, points, ages = faces
    edit = method.edit(images, ages, float(ages[0]), points)
    assert np.abs(edit.flow[0]).max() < 0.5
    assert np.abs(edit.edited[0].astype(int) - images[0].astype(int)).mean() < 1.0


def test_grayscale_stays_grayscale_and_no_colour_noise(method, faces):
    images, points, ages = faces
    gray = np.repeat(images.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)
    edited = method.edit(gray, ages, 75.0, points).edited
    spread = edited.astype(int).max(axis=3) - edited.astype(int).min(axis=3)
    assert spread.max() <= 2
    colour = method.edit(images, ages, 75.0, points).edited
    for before, after in zip(images, colour):
        assert colour_noise(after) <= 1.3 * colour_noise(before) + 0.5


def test_rejuvenation_grows_the_cranium(method, faces):
    images, points, ages = faces
    young = method.edit(images[:1], ages[:1], 3.0, points[:1]).flow[0]
    top = np.round(points[0, 10]).astype(int)  # forehead top on the midline
    x, y = top[0], max(top[1] - 12, 0)
    # backward flow: above the forehead a younger (larger) head shows what lay lower, nearer the eyes
    assert young[y, x, 1] > 0.1
    assert cranium_scale(30, 3) > 1.07 and cranium_scale(3, 30) < 0.85 and cranium_scale(30, 70) == 1.0


def test_age_chain_visits_every_bin_between():
    centres = np.array([1.0, 4.0, 8.0, 12.0, 17.0, 25.0, 35.0])
    assert _age_chain(30.0, 5.0, centres) == [30.0, 25.0, 17.0, 12.0, 8.0, 5.0]
    assert _age_chain(5.0, 9.0, centres) == [5.0, 8.0, 9.0]


def test_bad_inputs_are_refused(method, faces):
    images, points, ages = faces
    with pytest.raises(ValueError, match="landmarks"):
        method.edit(images, ages, 50.0)
    with pytest.raises(ValueError, match="faces must be"):
        method.edit(images[:, :128, :128], ages, 50.0, points)
    with pytest.raises(ValueError, match="source ages"):
        method.edit(images, ages[:1], 50.0, points)
    with pytest.raises(ValueError, match="strength"):
        PrototypeMethod(method.p, strength=-1)


def test_poor_landmarks_skip_the_shape_with_a_warning(method, faces):
    images, points, ages = faces
    scrambled = points[:1].copy()
    rng = np.random.default_rng(0)
    scrambled[0, :468] = scrambled[0, rng.permutation(468)]
    edit = method.edit(images[:1], ages[:1], 70.0, scrambled)
    assert edit.warnings[0] and "poor" in edit.warnings[0]
    assert np.abs(edit.flow).max() == 0.0


def test_registry_options_reach_the_method(tiny_prototypes, tmp_path):
    from faceage.errors import FaceageError
    from faceage.methods.registry import load_method

    path = tiny_prototypes.save(tmp_path / "p.safetensors")
    m = load_method("prototype", weights=path, strength="0.5", non_age="off")
    assert m.strength == 0.5 and m.non_age is False
    with pytest.raises(FaceageError, match="has no option 'colourise'"):
        load_method("prototype", weights=path, colourise="1")
    with pytest.raises(FaceageError, match="bad value 'maybe' for option 'hair'"):
        load_method("prototype", weights=path, hair="maybe")


def test_refiner_changes_only_where_the_method_pastes_and_keeps_gray(tiny_prototypes, faces, tmp_path):
    import torch

    from faceage.models.io import save_flat
    from faceage.models.refiner import Refiner, RefinerConfig

    torch.manual_seed(0)
    net = Refiner(RefinerConfig(resolution=64, channels=4, levels=2, blocks=1))
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.5)  # an untrained head is the identity: give it something to do
    path = save_flat(net, tmp_path / "refiner.safetensors")
    images, points, ages = faces
    plain = PrototypeMethod(tiny_prototypes, loop=False).edit(images, ages, 70.0, points)
    refining = PrototypeMethod(tiny_prototypes, loop=False, refine=True, refiner=path)
    refined = refining.edit(images, ages, 70.0, points)
    change = np.abs(refined.edited.astype(int) - plain.edited.astype(int)).max(axis=3)
    assert change[refined.mask > 0.5].mean() > 1.0  # it does something inside the face
    assert change[refined.mask == 0].max() <= 1  # and nothing where the change is not pasted
    assert np.array_equal(refined.flow, plain.flow)  # the shape is the prototype's
    gray = np.repeat(images.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3)
    out = refining.edit(gray, ages, 70.0, points).edited.astype(int)
    assert (out.max(axis=3) - out.min(axis=3)).max() <= 2
    with pytest.raises(Exception, match="not found|missing|refiner"):
        PrototypeMethod(tiny_prototypes, refine=True, refiner=tmp_path / "none.safetensors")
