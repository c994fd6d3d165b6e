"""Step 2, colour: the target prototype minus the source prototype, each relit like this face.

Projecting the face's shape-normalised sample on a cell's low-rank basis gives that cell's average
*lit like the face* (illumination-aware age progression, Kemelmacher-Shlizerman, Suwajanakorn &
Seitz, CVPR 2014); large jumps go bin by bin, each step relit from where the previous one ended.
Only the smooth part of the luminance change is used here (the fine part, lines and folds, comes
from the sharp signed detail of step 3), and it is faded out towards the hairline, where the
averages of older bins hold bare forehead and those of younger bins a fringe: that difference is
hair, not age, and painted a bright band before.

Convention: YCrCb 0..255 float32 in the mean frame (``faceage.models.prototype_frame``).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.models.prototype_frame import COLOUR_GRID, LIGHT_GRID, chroma_amount
from faceage.models.prototypes import PrototypeSet

LUMA_SMOOTH = 4.0  # Gaussian (mean-frame lattice px, 128 lattice) on the luminance change: coarse shading only
CHROMA_SMOOTH = 1.0  # and on the chroma change
LUMA_LIMIT = 24.0  # largest luminance change (grey levels) at strength 1: beyond it averages paint smudges
# A photo with little colour (sepia, faded prints, tinted black and white) gets as little colour change:
# the prototypes' chroma difference is for colour photos, and on a near-gray face it paints a tint
# (a sepia portrait made 3 turned cyan-white). Mean |Cr - 128| + |Cb - 128| over the face: below the
# first figure no chroma change, from the second the whole (colour photos of skin read 35-55).
CHROMA_PRESENT = (5.0, 25.0)


def chroma_scale(ycc: np.ndarray, face: np.ndarray) -> float:
    """0..1: how much of the prototypes' chroma change a face takes, by how much colour it has
    (``ycc`` YCrCb float, ``face`` weights of the face region)."""
    weights = face > 0.5
    if not weights.any():
        return 1.0
    colour = chroma_amount(ycc)[weights].mean()
    low, full = CHROMA_PRESENT
    return float(np.clip((colour - low) / (full - low), 0.0, 1.0))


def age_chain(source: float, target: float, centres: np.ndarray) -> list[float]:
    """source, every bin centre strictly between, target: large jumps go bin by bin."""
    lo, hi = min(source, target), max(source, target)
    inner = [float(c) for c in centres if lo < c < hi]
    return [source] + (inner if target >= source else inner[::-1]) + [target]


class Relighter:
    """The cells' means and lighting bases at the light lattice, prepared once per prototype set."""

    def __init__(self, prototypes: PrototypeSet, region: np.ndarray) -> None:
        self.p = prototypes
        self.weight = cv2.resize(region, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA)[..., None]
        self.mean = np.stack(
            [cv2.resize(c, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA) for c in prototypes.colour]
        )
        self.basis = prototypes.light.reshape(prototypes.light.shape[0], prototypes.light.shape[1], -1)

    def relit(self, age: float, x: np.ndarray, mix: list) -> np.ndarray:
        """The prototype at ``age`` lit like ``x`` (light lattice, YCrCb)."""
        out = np.zeros_like(x)
        for cell, weight in self.p.cell_weights(age, mix).items():
            mu = self.mean[cell]
            coeff = self.basis[cell] @ ((x - mu) * self.weight).ravel()
            out += weight * (mu + (self.basis[cell].T @ coeff).reshape(x.shape))
        return out


def colour_change(
    relighter: Relighter, light: np.ndarray, source: float, target: float, mix: list, region: np.ndarray
) -> np.ndarray:
    """(g, g, 3) YCrCb change in the mean frame (``COLOUR_GRID``) at strength 1; ``light`` is the
    face's shape-normalised sample on the light lattice."""
    p = relighter.p
    x = light
    lighting = np.zeros_like(x)
    chain = age_chain(source, target, p.centres)
    for a, b in zip(chain[:-1], chain[1:]):
        step = relighter.relit(b, x, mix) - relighter.relit(a, x, mix)
        lighting += step
        x = x + step
    fine = p.colour_at(target, mix) - p.colour_at(source, mix)
    fine_light = cv2.resize(fine, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA)
    # the light-lattice steps hold the mean difference too: keep only their lighting part
    change = fine + cv2.resize(lighting - fine_light, (COLOUR_GRID, COLOUR_GRID), interpolation=cv2.INTER_LINEAR)
    out = np.empty_like(change)
    out[..., 0] = np.clip(cv2.GaussianBlur(change[..., 0], (0, 0), LUMA_SMOOTH), -LUMA_LIMIT, LUMA_LIMIT)
    out[..., 1:] = cv2.GaussianBlur(change[..., 1:], (0, 0), CHROMA_SMOOTH)
    return out * region[..., None]
