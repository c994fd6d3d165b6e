"""Step 4, hair: grey strands mixed into the person's own hair, a share that grows with age.

A flat grey cap is what averaging gives and what nobody's hair looks like. Here the strands that
grey are the hair's own bright fine structure (its strand highlights, relative to the local
contrast), so the grey follows the strands; their share of the hair follows the target age, the
rest of the hair loses a little colour, and nothing outside hair-like pixels changes.

Convention: YCrCb 0..255 float32 on the aligned face.
"""

from __future__ import annotations

import cv2
import numpy as np

GREY_START = 45.0  # age at which greying begins
GREY_FULL = 85.0  # age at which the share reaches its maximum
GREY_MAX = 0.8  # the largest share of grey strands
STRAND_CONTRAST = 0.6  # how much more the bright strands grey than the dark ones
STRAND_GAIN = 0.3  # grey strands catch a little more light than dark ones (more would look knitted)
SILVER = (135.0, 0.5, 205.0)  # grey strand luma = base + gain x the hair's own smoothed luma, at most the cap
DESATURATE = 0.35  # the hair that stays coloured loses this share of its colour at full greying


def grey_share(source: float, target: float) -> float:
    """How much more of the hair is grey at ``target`` than at ``source`` (0 when rejuvenating)."""

    def share(age: float) -> float:
        return float(np.clip((age - GREY_START) / (GREY_FULL - GREY_START), 0.0, 1.0)) * GREY_MAX

    return max(share(target) - share(source), 0.0)


def grey_strands(ycc: np.ndarray, hair: np.ndarray, share: float) -> np.ndarray:
    """``ycc`` with a ``share`` of the hair under ``hair`` (weights) turned to grey strands."""
    if share <= 0.0 or not (hair > 0.05).any():
        return ycc
    scale = ycc.shape[0] / 256.0
    luma = ycc[..., 0]
    smooth = cv2.GaussianBlur(luma, (0, 0), 1.5 * scale)
    strands = luma - smooth
    contrast = np.sqrt(cv2.GaussianBlur(strands**2, (0, 0), 4.0 * scale)) + 1.0
    z = cv2.GaussianBlur(strands / contrast, (0, 0), 0.7 * scale)
    # the brighter strands grey first, but every strand takes some: salt and pepper, never a cap
    grey = np.clip(share * (1.0 + STRAND_CONTRAST * np.tanh(z)), 0.0, 1.0) * hair
    grey = grey.astype(np.float32)
    silver = np.minimum(SILVER[0] + SILVER[1] * smooth, SILVER[2])
    out = ycc.copy()
    out[..., 0] = smooth + (silver - smooth) * grey + strands * (1.0 + STRAND_GAIN * grey)  # strands kept
    fade = grey + (1.0 - grey) * DESATURATE * (share / GREY_MAX) * hair
    for c in (1, 2):
        out[..., c] = ycc[..., c] + (128.0 - ycc[..., c]) * fade
    return out
