"""Multi-scale detail bands of a face and their local energy: the texture step of prototype aging.

An a-trous style decomposition with Gaussians of doubling width: band k is the difference of the
image blurred at ``SIGMAS[k-1]`` and at ``SIGMAS[k]`` (band 0 against the image itself), the last
blur is the residual, and bands + residual add back to the image exactly. The local *energy* of a
band is its magnitude smoothed by a Gaussian a few times wider than the band: averaged over many
faces it keeps where wrinkles and skin texture are, which plain averaging of images blurs away
(Tiddeman, Burt & Perrett, "Prototyping and transforming facial textures for perception research",
IEEE CG&A 2001).

Convention: single-channel float32 images (luminance, 0..255) on the aligned face's grid; sigmas
in pixels of a 256 px face, scaled for other sizes.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIZE = 256
SIGMAS = (1.0, 2.0, 4.0, 8.0)  # blur of each level at 256 px; bands lie between neighbours
ENERGY_SPREAD = 3.0  # the energy map is |band| blurred by this many times the band's sigma


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT101)


def scaled_sigmas(size: int) -> tuple[float, ...]:
    """``SIGMAS`` for a face of ``size`` pixels."""
    return tuple(s * size / REFERENCE_SIZE for s in SIGMAS)


def decompose(luma: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """(H, W) float32 -> (bands, residual) with ``sum(bands) + residual == luma``."""
    luma = np.asarray(luma, np.float32)
    if luma.ndim != 2:
        raise ValueError(f"expected a single-channel (H, W) image, got {luma.shape}")
    bands = []
    previous = luma
    for sigma in scaled_sigmas(luma.shape[0]):
        blurred = _blur(luma, sigma)
        bands.append(previous - blurred)
        previous = blurred
    return bands, previous


def band_energy(bands: list[np.ndarray]) -> np.ndarray:
    """(K, H, W) float32 local energy (smoothed magnitude) of each band."""
    sigmas = scaled_sigmas(bands[0].shape[0])
    return np.stack([_blur(np.abs(b), ENERGY_SPREAD * s) for b, s in zip(bands, sigmas)]).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/float RGB -> (H, W) float32 luma (BT.601, as YCrCb)."""
    x = np.asarray(rgb, np.float32)
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
