"""Landmark-driven dense warps (faces.mesh), texture bands (faces.texture) and the photo warp."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.faces import mesh
from faceage.faces.paste import warp_photo
from faceage.faces.texture import band_energy, decompose

SIZE = 256


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.uniform(30, 226, (60, 2)), mesh.border_points(SIZE)]).astype(np.float32)


def test_border_points_cover_the_square_edges():
    b = mesh.border_points(SIZE)
    assert b.shape == (4 * mesh.BORDER_PER_SIDE, 2)
    on_edge = np.isclose(b, -0.5) | np.isclose(b, SIZE - 0.5)
    assert on_edge.any(axis=1).all()
    for corner in ([-0.5, -0.5], [SIZE - 0.5, -0.5], [SIZE - 0.5, SIZE - 0.5], [-0.5, SIZE - 0.5]):
        assert np.isclose(b, corner).all(axis=1).any()


def test_same_points_give_the_identity_map(points):
    m = mesh.backward_map(points, points, 64, SIZE)
    assert m.shape == (64, 64, 2)
    np.testing.assert_allclose(m, mesh.grid_points(64, SIZE).reshape(64, 64, 2), atol=1e-3)
    assert mesh.min_jacobian(m, SIZE) == pytest.approx(1.0, abs=1e-3)


def test_moved_points_move_the_pixels_between_them(points):
    moved = points.copy()
    inner = slice(0, 60)
    moved[inner] += np.array([3.0, -2.0], np.float32)  # the output shows the source 3 px left, 2 px down
    m = mesh.backward_map(moved, points, 128, SIZE)
    centre = m[64, 64] - mesh.grid_points(128, SIZE).reshape(128, 128, 2)[64, 64]
    np.testing.assert_allclose(centre, [-3.0, 2.0], atol=0.05)
    corner = m[0, 0] - mesh.grid_points(128, SIZE).reshape(128, 128, 2)[0, 0]
    assert np.abs(corner).max() < 0.5  # anchored borders barely move


def test_a_folding_warp_has_a_negative_jacobian(points):
    folded = points.copy()
    folded[:60] = SIZE - 1 - folded[:60]  # mirror the inside: triangles flip against the border
    m = mesh.backward_map(folded, points, 64, SIZE)
    assert mesh.min_jacobian(m, SIZE) < 0.2


def test_fixed_triangulation_matches_delaunay(points):
    tri = mesh.triangulate(points)
    a = mesh.Barycentric(points, 32, SIZE, tri).interpolate(points * 2.0)
    b = mesh.Barycentric(points, 32, SIZE).interpolate(points * 2.0)
    np.testing.assert_allclose(a, b, atol=1e-2)


def test_signed_areas_flip_with_mirroring(points):
    tri = mesh.triangulate(points)
    mirrored = points.copy()
    mirrored[:, 0] = -mirrored[:, 0]
    assert (np.sign(mesh.signed_areas(points, tri)) == -np.sign(mesh.signed_areas(mirrored, tri))).all()


def test_bands_add_back_to_the_image_and_energy_is_positive(astronaut):
    luma = astronaut[:256, 128:384].mean(axis=2).astype(np.float32)
    bands, residual = decompose(luma)
    np.testing.assert_allclose(sum(bands) + residual, luma, atol=1e-3)
    energy = band_energy(bands)
    assert energy.shape == (len(bands), 256, 256) and (energy >= 0).all()
    flat = band_energy(decompose(np.full((256, 256), 120.0, np.float32))[0])
    assert flat.max() < 1e-3  # a flat image has no detail anywhere
    with pytest.raises(ValueError, match="single-channel"):
        decompose(np.zeros((8, 8, 3), np.float32))


def test_warp_photo_zero_flow_changes_nothing(astronaut):
    matrix = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])  # photo 512 -> aligned 256
    flow = np.zeros((SIZE, SIZE, 2), np.float32)
    out = warp_photo(astronaut, flow, matrix)
    assert np.array_equal(out, astronaut) and out is not astronaut


def test_warp_photo_moves_only_where_the_flow_is(astronaut):
    matrix = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    flow = np.zeros((SIZE, SIZE, 2), np.float32)
    flow[100:150, 100:150, 0] = 4.0  # aligned px: the photo moves by 8 px there
    out = warp_photo(astronaut, flow, matrix)
    assert np.array_equal(out[:150], astronaut[:150]) and np.array_equal(out[320:], astronaut[320:])
    inside = out[220:280, 220:280].astype(int)
    expected = astronaut[220:280, 228:288].astype(int)
    assert np.abs(inside - expected).mean() < 2.0
    with pytest.raises(ValueError, match="flow must be"):
        warp_photo(astronaut, np.zeros((8, 8), np.float32), matrix)
