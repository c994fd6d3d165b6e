"""Colour guards for aged faces: invented high-frequency colour, and colour on grayscale input.

A generator that paints colour streaks or noise can still move an age estimate (the estimator
reads the texture as age), so age and identity numbers alone do not catch it. Two measures do:

- ``highfreq_colour_ratio``: energy of the YCrCb chroma minus its Gaussian blur (sigma 1.5 px),
  inside a central face ellipse, output over input. ~1 when colour detail is kept, > 1 when the
  method invents colour detail (the 400-step IPCGAN measured 2.2-3.3).
- ``channel_spread``: mean over the face ellipse of max(R, G, B) - min(R, G, B) in levels;
  0 for a grayscale image, so an edit of a grayscale photo should stay within a level or two.

Convention: (N, S, S, 3) or (S, S, 3) uint8 RGB aligned faces (the face centred, as the aligner
cuts them).
"""

from __future__ import annotations

import cv2
import numpy as np


def face_ellipse(size: int) -> np.ndarray:
    """(size, size) bool: the central ellipse of an aligned face (cheeks, eyes, nose, mouth)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64) + 0.5
    cy, cx, ry, rx = 0.52 * size, 0.5 * size, 0.36 * size, 0.30 * size
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _batch(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"expected (N, S, S, 3) uint8 faces, got {faces.shape} {faces.dtype}")
    return faces


def highfreq_colour_energy(faces: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(N,) mean squared high-frequency chroma (Cr, Cb minus their blur) inside the face ellipse."""
    faces = _batch(faces)
    mask = face_ellipse(faces.shape[1])
    out = []
    for face in faces:
        ycc = cv2.cvtColor(face, cv2.COLOR_RGB2YCrCb).astype(np.float64)
        chroma = ycc[..., 1:]
        high = chroma - cv2.GaussianBlur(chroma, (0, 0), sigma)
        out.append(float((high[mask] ** 2).sum(-1).mean()))
    return np.asarray(out)


def highfreq_colour_ratio(outputs: np.ndarray, inputs: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(N,) output / input high-frequency colour energy per face (see the module docstring)."""
    a, b = highfreq_colour_energy(outputs, sigma), highfreq_colour_energy(inputs, sigma)
    return a / np.maximum(b, 1e-6)


def channel_spread(faces: np.ndarray) -> np.ndarray:
    """(N,) mean of max(R, G, B) - min(R, G, B) over the face ellipse, in levels (0 for grayscale)."""
    faces = _batch(faces).astype(np.int16)
    mask = face_ellipse(faces.shape[1])
    spread = faces.max(-1) - faces.min(-1)
    return spread[:, mask].mean(1).astype(np.float64)
