"""Dense warps driven by face landmarks: the shape step of prototype aging.

A face's 468 mesh landmarks (MediaPipe without the iris points) are extended by a *head ring*
(points beyond the face oval, extrapolated from it, so a larger forehead carries a larger cranium
with it) and by fixed anchors on the border of the aligned square (nothing outside moves). A
piecewise-linear map over the triangulation of those points sends one point set onto another.

Maps are *backward*: for every pixel of the output grid they give the position in the source
image to sample (``cv2.remap`` convention). A map is checked by its Jacobian: a determinant near
zero or negative means the warp folds or tears, and the caller must weaken or skip it.

Convention: points and maps are float32 (x, y) in the aligned image's pixels, pixel centres at
integers; a map computed on a ``grid`` x ``grid`` lattice covers the same ``size`` square.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

MESH_POINTS = 468  # MediaPipe's face mesh without the 10 iris points
RING_SCALE = 1.3  # head ring: this far from the oval's centre, relative to the oval point
BORDER_PER_SIDE = 6  # fixed anchors per side of the aligned square


@functools.cache
def _oval_indices() -> tuple[int, ...]:
    from faceage.faces.landmarks import REGION_CONTOURS

    return tuple(REGION_CONTOURS["face_oval"][0])


def oval_indices() -> np.ndarray:
    """Landmark indices of the face oval, in walking order."""
    return np.asarray(_oval_indices(), np.int64)


def head_ring(landmarks: np.ndarray, size: int, scale: float = RING_SCALE) -> np.ndarray:
    """Points beyond the face oval: centre + ``scale`` x (oval point - centre), kept 2 px inside
    the square. Moving the oval moves them by extrapolation (the head outline follows the face)."""
    oval = np.asarray(landmarks, np.float32)[oval_indices()]
    centre = oval.mean(axis=0)
    ring = centre + scale * (oval - centre)
    return np.clip(ring, 2.0, size - 3.0).astype(np.float32)


def border_points(size: int, per_side: int = BORDER_PER_SIDE) -> np.ndarray:
    """Fixed anchors on the border of the ``size`` square (its outer pixel edges), corners included."""
    lo, hi = -0.5, size - 0.5
    t = np.linspace(lo, hi, per_side + 1)[:-1]  # each side without its last corner
    sides = [
        np.stack([t, np.full_like(t, lo)], 1),  # top, left to right
        np.stack([np.full_like(t, hi), t], 1),  # right, top to bottom
        np.stack([hi + lo - t, np.full_like(t, hi)], 1),  # bottom, right to left
        np.stack([np.full_like(t, lo), hi + lo - t], 1),  # left, bottom to top
    ]
    return np.concatenate(sides).astype(np.float32)


def control_points(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The warp's control points of one face: 468 mesh points, head ring, border anchors."""
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim != 2 or lm.shape[0] < MESH_POINTS or lm.shape[1] != 2:
        raise ValueError(f"expected (>= {MESH_POINTS}, 2) landmarks, got {lm.shape}")
    return np.concatenate([lm[:MESH_POINTS], head_ring(lm, size), border_points(size)])


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) int32 of a point set (done once, on the mean shape)."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed area of every triangle (T,): the sign flips where a mesh folds."""
    p = np.asarray(points, np.float64)[triangles]
    return 0.5 * (
        (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    )


def grid_points(grid: int, size: int) -> np.ndarray:
    """Pixel centres of a ``grid`` x ``grid`` lattice over the ``size`` square, (grid*grid, 2)."""
    step = size / grid
    c = (np.arange(grid, dtype=np.float64) + 0.5) * step - 0.5
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs.ravel(), ys.ravel()], 1)


class Barycentric:
    """Where every lattice pixel lies in a triangulated point set, kept for reuse.

    ``interpolate(values)`` then evaluates the piecewise-linear function that takes ``values`` at
    the points (for example: other positions of the same points, giving a warp) on the lattice.
    Each lattice pixel's triangle is found by rasterising the triangles (OpenCV), which is about
    a hundred times faster than a point-location walk; pixels no triangle covers (outside the hull
    or on a hairline seam) take the triangle with the nearest centroid, extrapolated. The border
    anchors make the hull the whole square, so this only touches the outermost half pixel.
    """

    def __init__(self, points: np.ndarray, grid: int, size: int, triangles: np.ndarray | None = None) -> None:
        from scipy.spatial import Delaunay

        pts = np.asarray(points, np.float64)
        self.grid, self.size = int(grid), int(size)
        simplices = Delaunay(pts).simplices if triangles is None else np.asarray(triangles, np.int64)
        transform = _affine_to_barycentric(pts, simplices)
        q = grid_points(self.grid, self.size)
        simplex = _rasterise(pts, simplices, self.grid, self.size).ravel()
        missing = simplex < 0
        if missing.any():
            centroids = pts[simplices].mean(axis=1)
            idx = np.flatnonzero(missing)
            d = ((q[idx, None, :] - centroids[None]) ** 2).sum(-1)
            simplex[idx] = d.argmin(axis=1)
        self.vertices = simplices[simplex]  # (P, 3)
        t = transform[simplex]  # (P, 3, 2): affine to barycentric
        b = np.einsum("pij,pj->pi", t[:, :2, :], q - t[:, 2, :])
        self.weights = np.concatenate([b, 1.0 - b.sum(axis=1, keepdims=True)], 1).astype(np.float32)

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """(N, C) values at the points -> (grid, grid, C) float32 on the lattice."""
        v = np.asarray(values, np.float32)
        out = np.einsum("pk,pkc->pc", self.weights, v[self.vertices])
        return out.reshape(self.grid, self.grid, -1)


def _affine_to_barycentric(points: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    """(T, 3, 2) per triangle: the inverse edge matrix and the third vertex (scipy's layout)."""
    p = points[simplices]
    m = np.stack([p[:, 0] - p[:, 2], p[:, 1] - p[:, 2]], axis=2)  # (T, 2, 2)
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    m[np.abs(det) < 1e-12] += np.eye(2) * 1e-6  # a degenerate triangle covers no pixel anyway
    return np.concatenate([np.linalg.inv(m), p[:, 2][:, None, :]], axis=1)


def _rasterise(points: np.ndarray, simplices: np.ndarray, grid: int, size: int) -> np.ndarray:
    """(grid, grid) int32: the index of the triangle covering each lattice pixel's centre, -1 where none."""
    index = np.full((grid, grid), -1, np.int32)
    lattice = (points + 0.5) * (grid / size) - 0.5  # lattice pixel coordinates
    corners = np.round(lattice * 16).astype(np.int32)[simplices]
    for t, tri in enumerate(corners):
        cv2.fillConvexPoly(index, tri, int(t), lineType=cv2.LINE_8, shift=4)
    return index


def backward_map(out_points: np.ndarray, src_points: np.ndarray, grid: int, size: int) -> np.ndarray:
    """(grid, grid, 2) float32 source positions for every output pixel, for a warp that moves
    ``src_points`` to ``out_points`` (both (N, 2), the same control points)."""
    return Barycentric(out_points, grid, size).interpolate(src_points)


def upsample_map(mapping: np.ndarray, size: int) -> np.ndarray:
    """A map on a coarser lattice -> (size, size, 2) float32 (bilinear on the displacement)."""
    grid = mapping.shape[0]
    if grid == size:
        return mapping.astype(np.float32)
    identity = grid_points(grid, size).reshape(grid, grid, 2).astype(np.float32)
    disp = cv2.resize(mapping - identity, (size, size), interpolation=cv2.INTER_LINEAR)
    return identity_map(size) + disp


def identity_map(size: int) -> np.ndarray:
    """(size, size, 2) float32: every pixel maps to itself."""
    c = np.arange(size, dtype=np.float32)
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs, ys], axis=2)


def min_jacobian(mapping: np.ndarray, size: int) -> float:
    """Smallest Jacobian determinant of a backward map on a lattice over the ``size`` square
    (1 = no local change of area; <= 0 means the warp folds)."""
    step = size / mapping.shape[0]
    dx = np.diff(mapping, axis=1)[:-1] / step  # d(source)/dx
    dy = np.diff(mapping, axis=0)[:, :-1] / step  # d(source)/dy
    det = dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]
    return float(det.min()) if det.size else 1.0


def remap(image: np.ndarray, mapping: np.ndarray, border: int = cv2.BORDER_REFLECT101) -> np.ndarray:
    """Sample ``image`` at a (H, W, 2) backward map (bilinear)."""
    return cv2.remap(image, mapping[..., 0], mapping[..., 1], cv2.INTER_LINEAR, borderMode=border)
