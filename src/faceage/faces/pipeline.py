"""Detect → dense landmarks → FFHQ alignment, composed: one photo in, aligned faces out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlignedFace:
    """One face of a photo, aligned to the FFHQ template.

    Convention:
        image      (size, size, 3) uint8 RGB, the aligned crop.
        matrix     (2, 3) float64, photo → aligned (cv2.warpAffine forward matrix).
        box        (4,) float32 x0, y0, x1, y1 in photo pixels (detector box).
        points5    (5, 2) float32 in **photo** coordinates, ordered left eye, right eye,
                   nose tip, mouth left, mouth right (as seen in the image).
        landmarks  (478, 2) float32 MediaPipe points in **aligned** coordinates, or None.
        score      detector confidence in [0, 1].
        size       side of ``image`` in pixels.
    """

    image: np.ndarray
    matrix: np.ndarray
    box: np.ndarray
    points5: np.ndarray
    landmarks: np.ndarray | None
    score: float
    size: int
