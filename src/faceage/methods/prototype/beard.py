"""Step 5, beard: below about 15 years, beard and moustache go, replaced by the person's skin.

Facial hair is an age cue, not a non-age region: a man aged to 8 must lose his beard. Where the
lower face is darker than the person's cheeks, or greyer (a grey or white beard), it is filled from the
surrounding skin (smoothed: children's skin is even), fully at ``BEARDLESS`` and
below, fading out towards ``BEARD_AGE``.

Only faces the method's classifier takes for men (``MALE``): the jaw and chin of most faces lie
in shadow, darker than the lit cheeks, so on women the darkness cue found a "beard" nearly every
time and flattened the lower face into one smooth patch. The lower face is feathered widely
(``EDGE``), so no fill ends in a hard line along the jaw.

Convention: YCrCb 0..255 float32 on the aligned face.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.models.prototype_frame import chroma_amount

BEARD_AGE = 16.0  # targets below this lose facial hair, gradually
BEARDLESS = 12.0  # and at or below this completely
FILL_REACH = 20.0  # the fill averages skin within about 1/20 of the face width
DARKER = (6.0, 14.0)  # grey levels darker than the cheeks from which a pixel counts as beard, surely beard
# a grey or white beard is not darker than the cheeks but has less colour than the skin around it:
# |Cr - 128| + |Cb - 128| this far below the cheeks' from which a pixel counts as beard, surely beard
GREYER = (6.0, 10.0)
MALE = (0.5, 0.8)  # the classifier's male share from which a face may have a beard, surely may
EDGE = 40.0  # the lower face's edge is feathered over about 1/40 of the face width
SUPPORT = 0.25  # skin weight near a pixel from which its fill is fully trusted


def removal_amount(source: float, target: float, male: float = 1.0) -> float:
    """0 (keep) .. 1 (remove): only adult men (``male``: the classifier's share) aged below ``BEARD_AGE``."""
    if source < BEARD_AGE:
        return 0.0
    man = np.clip((male - MALE[0]) / (MALE[1] - MALE[0]), 0.0, 1.0)
    return float(man * np.clip((BEARD_AGE - target) / (BEARD_AGE - BEARDLESS), 0.0, 1.0))


def beard_mask(ycc: np.ndarray, lower: np.ndarray, skin: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32: how beard-like each pixel of the lower face is (darker or greyer than the cheeks)."""
    luma = ycc[..., 0]
    s = ycc.shape[0]
    cheeks = np.zeros(luma.shape, bool)
    for idx in (50, 280):  # cheek centres below the eyes
        x, y = np.round(landmarks[idx]).astype(int)
        r = max(int(s / 40), 2)
        cheeks[max(y - r, 0) : y + r, max(x - r, 0) : x + r] = True
    ref = float(np.median(luma[cheeks])) if cheeks.any() else float(np.median(luma[skin])) if skin.any() else 128.0
    local = cv2.GaussianBlur(luma, (0, 0), s / 128.0)
    dark = np.clip((ref - local - DARKER[0]) / DARKER[1], 0.0, 1.0)
    chroma = chroma_amount(ycc)
    ref_chroma = float(np.median(chroma[cheeks])) if cheeks.any() else 0.0
    local_chroma = cv2.GaussianBlur(chroma, (0, 0), s / 128.0)
    grey = np.clip((ref_chroma - local_chroma - GREYER[0]) / GREYER[1], 0.0, 1.0)
    dark = np.maximum(dark, grey)
    soft = cv2.GaussianBlur(lower.astype(np.float32), (0, 0), s / EDGE)
    return (cv2.GaussianBlur(dark, (0, 0), s / 96.0) * soft).astype(np.float32)


def remove_beard(ycc: np.ndarray, mask: np.ndarray, amount: float, skin: np.ndarray) -> np.ndarray:
    """``ycc`` with the masked facial hair replaced by the smoothed colour of the skin around it.

    The fill is a normalised convolution over skin pixels only (``skin`` weights, beard left out),
    so neither background nor hair can bleed into the chin, whatever the crop."""
    if amount <= 0.0 or mask.max() < 0.2:
        return ycc
    s = ycc.shape[0]
    source = (np.clip(skin, 0.0, 1.0) * (1.0 - np.clip(mask * 2.0, 0.0, 1.0))).astype(np.float32)
    sigma = s / FILL_REACH
    weight = cv2.GaussianBlur(source, (0, 0), sigma)
    filled = cv2.GaussianBlur(ycc * source[..., None], (0, 0), sigma) / np.maximum(weight, 1e-3)[..., None]
    # fades where little skin is near (below the chin) instead of stopping in a line there
    support = np.clip(weight / SUPPORT, 0.0, 1.0)
    w = (np.clip(mask * 1.5, 0.0, 1.0) * amount * support)[..., None]
    return ycc + (filled - ycc) * w
