"""Step 3, detail: the lines, folds and skin texture of the target age.

Two parts, both in the luminance only:

- **signed detail** - each age bin x gender holds the fine part (below ``DETAIL_SIGMA``) of its
  average face after the faces were pulled onto each other by dense optical flow ("collection
  flow", Kemelmacher-Shlizerman et al., CVPR 2014), so nasolabial folds, eye bags and forehead
  lines stay sharp in the average instead of blurring away. The target's detail minus the
  source's, relit like this face (scaled by the face's local brightness over the prototype's), is
  added: lines appear where older faces have them and fade for rejuvenation;
- **band energy ratios** - each detail band of the face is scaled by the target/source ratio of
  the prototypes' local band energies (Tiddeman, Burt & Perrett, IEEE CG&A 2001): the person's own
  skin texture gets rougher with age and smoother towards childhood.

Convention: luminance 0..255 float32 on the aligned face; ratio maps in the mean frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.faces.texture import decompose
from faceage.models.prototypes import PrototypeSet

RATIO_RANGE = (0.35, 3.0)  # band energy ratios are clamped to this (at strength 1)
ENERGY_FLOOR = 0.3  # grey levels added to band energies before the ratio (flat skin stays flat)
RELIGHT_RANGE = (0.5, 1.6)  # the face's brightness over the prototype's, as a detail gain
RELIGHT_SMOOTH = 8.0  # px: the brightness the detail is relit with


def energy_ratio(p: PrototypeSet, source: float, target: float, mix: list, region: np.ndarray) -> np.ndarray:
    """(K, e, e) band scale factors in the mean frame at strength 1 (1 outside ``region``)."""
    e_t = p.energy_at(target, mix)
    e_s = p.energy_at(source, mix)
    ratio = np.clip((e_t + ENERGY_FLOOR) / (e_s + ENERGY_FLOOR), *RATIO_RANGE)
    ratio = np.stack([cv2.GaussianBlur(r, (0, 0), sigmaX=1.0) for r in ratio])
    return 1.0 + (ratio - 1.0) * region[None]


def log_ratio(ratio_in_face: np.ndarray) -> np.ndarray:
    """Ratios as logs, so strength ``a`` gives ``ratio ** a`` by one multiply."""
    return np.log(np.clip(ratio_in_face, 1e-3, None)).astype(np.float32)


def bands_of(luma: np.ndarray) -> np.ndarray:
    """(K, H, W) detail bands of the (inpainted) face luminance."""
    bands, _ = decompose(luma)
    return np.stack(bands).astype(np.float32)


def texture_change(bands: np.ndarray, log_ratios: np.ndarray, strength: float) -> np.ndarray:
    """Luminance added by scaling every band by ``ratio ** strength``."""
    if strength == 0.0:
        return np.zeros(bands.shape[1:], np.float32)
    return ((np.exp(log_ratios * strength) - 1.0) * bands).sum(axis=0).astype(np.float32)


def only_smoothing(change: np.ndarray, face_fine: np.ndarray) -> np.ndarray:
    """For rejuvenation: the part of the signed detail change that flattens the face's own lines
    (opposite in sign, at most as strong as them). Adding a child average's crisp features to an
    adult face draws new edges, which every age reader takes for lines."""
    opposing = np.sign(change) != np.sign(face_fine)
    return np.where(opposing, np.sign(change) * np.minimum(np.abs(change), np.abs(face_fine)), 0.0).astype(np.float32)


def relight_gain(face_luma: np.ndarray, prototype_luma: np.ndarray) -> np.ndarray:
    """(H, W) how much stronger this face's shading is than the prototype's: its smoothed
    brightness over the prototype's, clamped (dark skin and dim photos get fainter lines)."""
    face = cv2.GaussianBlur(face_luma, (0, 0), RELIGHT_SMOOTH)
    proto = cv2.GaussianBlur(prototype_luma, (0, 0), RELIGHT_SMOOTH)
    return np.clip(face / np.maximum(proto, 16.0), *RELIGHT_RANGE).astype(np.float32)
