"""Step 1, shape: move the face's landmarks by the prototypes' change, with a warp that cannot fold.

The prototype landmarks' change from the source age to the target age (times the strength) is
added to the face's own landmarks; the head ring beyond the face oval follows, and the cranium is
scaled by growth norms (a child's head above the eyes is relatively larger). The control points'
displacements are spread over a lattice (piecewise-linear, then smoothed) and used as a
*stationary velocity field*: its exponential, computed by scaling and squaring, is a smooth
one-to-one warp whatever the strength (Arsigny et al., "A Log-Euclidean framework for statistics
on diffeomorphisms", MICCAI 2006). So the whole change is applied instead of being weakened as
soon as a piecewise-linear warp would fold somewhere.

Convention: backward maps as ``faceage.faces.mesh`` (output pixel -> source position), float32
(x, y) in aligned pixels; lattices cover the same ``size`` square.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceage.faces import mesh
from faceage.faces.landmarks import LEFT_EYE_CONTOUR6, RIGHT_EYE_CONTOUR6

FLOW_GRID = 128  # lattice of the velocity field (upsampled to the face, and to the photo by the engine)
VELOCITY_SMOOTH_PX = 3.0  # Gaussian on the velocity field, in face pixels: removes the mesh's kinks
SQUARINGS = 6  # scaling and squaring: the field is divided by 2**6 and composed six times
MIN_JACOBIAN = 0.15  # below this local area ratio a warp counts as (nearly) folding

# Head height above the eyes relative to the face below them, by age: the cranium is near adult
# size early while the face keeps growing into the late teens (approximate growth norms after
# Farkas, "Anthropometry of the Head and Face", 1994). The landmarks stop at the hairline, so
# this drives the head ring above the eyes: a child's cranium grows, an adult's shrinks back.
CRANIUM_AGES = (0.0, 1.0, 3.0, 6.0, 10.0, 14.0, 18.0, 120.0)
CRANIUM_RATIO = (1.50, 1.45, 1.32, 1.20, 1.12, 1.05, 1.0, 1.0)


@dataclass(frozen=True, eq=False)
class ShapeChange:
    """One face's shape step.

    velocity    (g, g, 2) float32 velocity field on the ``FLOW_GRID`` lattice, in face pixels, of
                the prototypes' landmark change at strength 1.
    cranium     (g, g, 2) the same for the cranium's growth, which follows growth norms and is
                never pushed past them: the warp at strength ``a`` is the exponential of
                ``a * velocity + min(a, 1) * cranium``.
    landmarks   (478, 2) the face's landmarks (source).
    """

    velocity: np.ndarray
    cranium: np.ndarray
    landmarks: np.ndarray
    size: int

    def field(self, strength: float) -> np.ndarray:
        return strength * self.velocity + min(strength, 1.0) * self.cranium

    def backward(self, strength: float) -> np.ndarray:
        """(size, size, 2) backward map of the warp at ``strength`` (identity at 0)."""
        if strength == 0.0:
            return mesh.identity_map(self.size)
        lattice = exponential(-self.field(strength), self.size)
        return mesh.upsample_map(lattice, self.size)

    def moved_landmarks(self, strength: float) -> np.ndarray:
        """(478, 2) where the landmarks land under the warp at ``strength`` (forward map)."""
        if strength == 0.0:
            return self.landmarks.copy()
        forward = exponential(self.field(strength), self.size)
        return sample_map(forward, self.landmarks, self.size)

    def displacement_share(self, strength: float) -> float:
        """Mean landmark movement as a share of the face height (eyes to chin, x2): how big the
        shape edit is, for the benchmark."""
        moved = self.moved_landmarks(strength)
        height = 2.0 * float(np.linalg.norm(self.landmarks[152] - _eye_centre(self.landmarks)))
        return float(
            np.linalg.norm(moved[: mesh.MESH_POINTS] - self.landmarks[: mesh.MESH_POINTS], axis=1).mean()
        ) / max(height, 1e-6)


# Share of the norms' cranium growth applied when rejuvenating. The photo keeps its head size, so a
# child's relatively large cranium can only be drawn by inflating the forehead: at the whole growth
# adults with short hair or none got an egg-shaped dome (an adult aged to 5 here grew the head
# above the eyes by a quarter) while the estimated age barely moved (21.5 vs 23.7 years without
# it, 16 test faces); the lower face and the eyes of the prototypes carry the child's proportions.
YOUNGER_CRANIUM = 0.25


# Rejuvenation toward a child: the prototypes' averaged landmark change is multiplied by a gain that
# grows from 1 at a target of 20 to ``YOUNGER_GAIN[0]`` at 10 and below, and does not grow further
# with the loop's strength. The averages seem to understate a child's proportions (the bins mix
# ages, the landmarker fits children loosely): at the plain difference an adult aged to 10 kept an
# adult's face (the example photo read 29.7 by the independent estimator); at 4x its face is
# rounder, the lower face shorter, the mouth smaller, the eyes relatively larger, and it read 14.4
# on the aligned face, 17.1 pasted into the photo (looked at on the benchmark grid, 6 more test
# adults and 10 LAG people: children or young teens, same person; glasses bend with the warp). The
# own regressor does not see these proportions (it read the example 6 years OLDER with them), so
# the loop cannot choose this gain: it follows the target age. The cost, measured on LAG's real
# people aged back to their young photo's age: children (young photo read <= 12) 74.7 % moved
# closer to the real child photo instead of 84 %, their age error 12.9 instead of 16.1 years;
# extending the gain to targets up to 30 lowered the share of all people moved closer further
# (46 -> 45 %) for under a year of estimated age at 15 and 25.
YOUNGER_GAIN_AGES = (10.0, 20.0)
YOUNGER_GAIN = (4.0, 1.0)


# ... but never past this mean landmark movement (share of the face height): adults aged to 2-5 got
# 3 % and more at 4x, a squashed face with pursed lips rather than a toddler's
YOUNGER_MAX_SHARE = 0.018


def younger_gain(source: float, target: float) -> float:
    """The factor on the prototypes' shape change when rejuvenating from ``source`` to ``target``
    (1 when aging), before ``YOUNGER_MAX_SHARE``."""
    if target >= source:
        return 1.0
    return float(np.interp(target, YOUNGER_GAIN_AGES, YOUNGER_GAIN))


def younger_shape_change(
    landmarks: np.ndarray, delta: np.ndarray, cranium: float, size: int, source: float, target: float
) -> ShapeChange:
    """``shape_change`` of ``delta`` times ``younger_gain``, the gain lowered so that the landmarks
    move at most ``YOUNGER_MAX_SHARE`` (never below the plain difference)."""
    gain = younger_gain(source, target)
    change = shape_change(landmarks, gain * np.asarray(delta, np.float32), cranium, size)
    if gain > 1.0:
        share = change.displacement_share(1.0)
        if share > YOUNGER_MAX_SHARE:
            lower = max(gain * YOUNGER_MAX_SHARE / share, 1.0)
            change = shape_change(landmarks, lower * np.asarray(delta, np.float32), cranium, size)
    return change


def cranium_ratio(age: float) -> float:
    """Head height above the eyes relative to the face below them at ``age``, over an adult's."""
    return float(np.interp(age, CRANIUM_AGES, CRANIUM_RATIO))


def cranium_scale(source: float, target: float) -> float:
    """How much the head above the eyes scales (about the eyes) from ``source`` to ``target``."""
    ratio = cranium_ratio(target) / cranium_ratio(source)
    return ratio if target >= source else 1.0 + YOUNGER_CRANIUM * (ratio - 1.0)


def _eye_centre(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[list(LEFT_EYE_CONTOUR6 + RIGHT_EYE_CONTOUR6)].mean(axis=0)


def scale_cranium(control: np.ndarray, landmarks: np.ndarray, factor: float, size: int) -> np.ndarray:
    """Control points with the head ring and the forehead scaled by ``factor`` about the eye
    line, fading in above the brows (the face below the eyes is left to the prototypes)."""
    if abs(factor - 1.0) < 1e-3:
        return control
    out = control.copy()
    eyes = _eye_centre(landmarks)
    chin = landmarks[152]
    down = (chin - eyes) / max(float(np.linalg.norm(chin - eyes)), 1e-6)
    n = mesh.MESH_POINTS + len(mesh.oval_indices())  # mesh and ring; border anchors stay
    rel = out[:n] - eyes
    height = -(rel @ down)  # distance above the eye line
    face_height = float(np.linalg.norm(chin - eyes))
    weight = np.clip(height / (0.5 * face_height), 0.0, 1.0)[:, None]
    out[:n] = eyes + rel * (1.0 + (factor - 1.0) * weight)
    out[:n] = np.clip(out[:n], 1.0, size - 2.0)
    return out


def shape_change(landmarks: np.ndarray, delta: np.ndarray, cranium: float, size: int) -> ShapeChange:
    """The velocity field that moves ``landmarks`` by ``delta`` (478, 2) and scales the cranium by
    ``cranium`` at strength 1."""
    landmarks = np.asarray(landmarks, np.float32)
    source = mesh.control_points(landmarks, size)
    target_lm = landmarks + np.asarray(delta, np.float32)
    moved = mesh.control_points(target_lm, size)
    grown = scale_cranium(moved, target_lm, cranium, size)
    spread = mesh.Barycentric(source, FLOW_GRID, size)
    sigma = VELOCITY_SMOOTH_PX * FLOW_GRID / size

    def smooth_field(moves: np.ndarray) -> np.ndarray:
        field = spread.interpolate(moves.astype(np.float32))
        return cv2.GaussianBlur(field, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT).astype(np.float32)

    return ShapeChange(smooth_field(moved - source), smooth_field(grown - moved), landmarks, int(size))


def exponential(velocity: np.ndarray, size: int, squarings: int = SQUARINGS) -> np.ndarray:
    """(g, g, 2) backward/forward map ``x -> x + u(x)`` of the flow of ``velocity`` for unit time,
    by scaling and squaring: u_0 = v / 2^n, u_{k+1}(x) = u_k(x) + u_k(x + u_k(x))."""
    grid = velocity.shape[0]
    step = size / grid  # face pixels per lattice cell
    u: np.ndarray = (np.asarray(velocity, np.float32) / (2.0**squarings)).astype(np.float32)
    base = np.indices((grid, grid), np.float32)[::-1].transpose(1, 2, 0)  # lattice (x, y)
    for _ in range(squarings):
        at = base + u / step
        moved = cv2.remap(u, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        u = (u + moved).astype(np.float32)
    positions = mesh.grid_points(grid, size).reshape(grid, grid, 2).astype(np.float32)
    return positions + u


def sample_map(mapping: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """A lattice map read at arbitrary face positions ``points`` (N, 2) (bilinear)."""
    grid = mapping.shape[0]
    scale = grid / size
    at = (np.asarray(points, np.float32) + 0.5) * scale - 0.5
    disp = mapping - mesh.grid_points(grid, size).reshape(grid, grid, 2).astype(np.float32)
    read = cv2.remap(
        disp, at[:, 0].reshape(1, -1), at[:, 1].reshape(1, -1), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )[0]
    return (np.asarray(points, np.float32) + read).astype(np.float32)
