"""Step 4, hair: grey strands mixed into the person's own hair, a share that grows with age; and
back, grey hair darkened when rejuvenating.

A flat grey cap is what averaging gives and what nobody's hair looks like. Here the strands that
grey are the hair's own bright fine structure (its strand highlights, relative to the local
contrast), so the grey follows the strands; their share of the hair follows the target age, the
rest of the hair loses a little colour, and nothing outside hair-like pixels changes.

Convention: YCrCb 0..255 float32 on the aligned face.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.models.prototype_frame import chroma_amount

GREY_START = 45.0  # age at which greying begins
GREY_FULL = 85.0  # age at which the share reaches its maximum
GREY_MAX = 0.8  # the largest share of grey strands
STRAND_CONTRAST = 0.6  # how much more the bright strands grey than the dark ones
STRAND_GAIN = 0.3  # grey strands catch a little more light than dark ones (more would look knitted)
SILVER = (135.0, 0.5, 205.0)  # grey strand luma = base + gain x the hair's own smoothed luma, at most the cap
DESATURATE = 0.35  # the hair that stays coloured loses this share of its colour at full greying
CHROMA_SMOOTH = 2.5  # px at 256: the loss of colour is this smooth (the strands are in the luma)
# Rejuvenation: grey hair (little colour, brighter than this luma) darkens toward a dark brown, as
# much as the grey share falls between the two ages; the strands' own texture stays.
GREY_CHROMA = 12.0  # |Cr - 128| + |Cb - 128| below which hair counts as grey
GREY_LUMA = (70.0, 130.0)  # luma from which hair counts as grey (darker is dark hair), surely grey
DARK_HAIR = (62.0, 140.0, 118.0)  # YCrCb of the brown the grey hair darkens toward


def grey_share(source: float, target: float) -> float:
    """How much more of the hair is grey at ``target`` than at ``source`` (0 when rejuvenating)."""

    def share(age: float) -> float:
        return float(np.clip((age - GREY_START) / (GREY_FULL - GREY_START), 0.0, 1.0)) * GREY_MAX

    return max(share(target) - share(source), 0.0)


def darkening_share(source: float, target: float) -> float:
    """How much of the grey is taken back at ``target`` (0 when aging): the grey share lost, over
    the most there can be."""
    return grey_share(target, source) / GREY_MAX


def darken_grey(ycc: np.ndarray, hair: np.ndarray, share: float) -> np.ndarray:
    """``ycc`` with the grey hair under ``hair`` (weights) darkened by ``share`` (0..1): the
    smoothed hair moves toward ``DARK_HAIR``, its strands are kept. Coloured hair is left alone."""
    if share <= 0.0 or not (hair > 0.05).any():
        return ycc
    scale = ycc.shape[0] / 256.0
    luma = ycc[..., 0]
    smooth = cv2.GaussianBlur(luma, (0, 0), 1.5 * scale)
    chroma = chroma_amount(ycc)
    chroma = cv2.GaussianBlur(chroma, (0, 0), 2.0 * scale)
    lo, hi = GREY_LUMA
    grey = np.clip(1.0 - chroma / GREY_CHROMA, 0.0, 1.0) * np.clip((smooth - lo) / (hi - lo), 0.0, 1.0)
    weight = (np.clip(share, 0.0, 1.0) * grey * hair).astype(np.float32)
    out = ycc.copy()
    strands = (luma - smooth) * (1.0 - 0.5 * weight)  # dark hair shows its strands less
    out[..., 0] = smooth + (DARK_HAIR[0] - smooth) * weight + strands
    for c in (1, 2):
        out[..., c] = ycc[..., c] + (DARK_HAIR[c] - ycc[..., c]) * weight
    return out


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
    # colour fades smoothly (strands too fine to show their own colour at photo scale): a fade that
    # followed each strand would be fine colour speckle, which the artifact guard rightly flags
    soft = np.minimum(cv2.GaussianBlur(grey, (0, 0), CHROMA_SMOOTH * scale), hair)
    fade = soft + (1.0 - soft) * DESATURATE * (share / GREY_MAX) * hair
    for c in (1, 2):
        out[..., c] = ycc[..., c] + (128.0 - ycc[..., c]) * fade
    return out
