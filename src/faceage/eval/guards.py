"""Guards against artefacts that fool an age estimator and an identity verifier.

The independent age estimator reads coloured streaks as age, and identity models forgive them, so
a method that paints rainbow noise over the same face scores as "aged, same person". These checks
measure what such a method changes instead:

- chroma detail: energy of the colour channels' fine detail (YCrCb Cr and Cb minus their Gaussian
  blur) inside the face, output over input. Ageing adds wrinkles and spots in brightness; real skin
  has little fine colour detail, streak noise has a lot.
- gray kept: a grayscale face must come out grayscale (every pixel's channel spread <= 2 levels);
  a method that learned a colour prior or leaks colour noise fails.
- realism: Fréchet distance and KID (Binkowski et al., "Demystifying MMD GANs") between edited
  faces and *real* faces of the target age, on the same MobileNetV2 features as ``faceage.eval.fid``,
  beside the floor (two disjoint real sets) and the unedited inputs' score.

The null edits these margins are calibrated on, and the picture grid, run methods and live with the
benchmark (``faceage.bench``): this module only measures, so the engine can report with it.

Convention: faces are (N, S, S, 3) uint8 RGB, aligned FFHQ-style (``faceage.faces``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# The face inside an FFHQ-aligned crop as an ellipse (centre x, y, semi-axes x, y; fractions of the
# side). It is inscribed in the box dlib's HOG detector finds on such crops
# (``faceage.eval.age_estimator.ALIGNED_FACE_BOX`` = 0.24, 0.30, 0.76, 0.90): cheeks, nose, mouth, eyes and
# lower forehead, no hair or background, for any face size.
FACE_ELLIPSE = (0.50, 0.60, 0.24, 0.29)
# Gaussian blur that separates "fine" chroma detail, in pixels of a 128-px crop (scaled with size).
CHROMA_SIGMA_128 = 1.5
# Added to both energies of the ratio (squared levels): a gray face has ~0 chroma energy, and a
# ratio of two near-zero numbers says nothing.
CHROMA_EPS = 1.0
# A gray input must come out with every pixel's max - min channel <= this (JPEG-free arrays).
GRAY_SPREAD_MAX = 2
# Chroma-detail guard: per target group, median and 90th percentile of output / input energy.
# Measured on 399 prepared faces (128 px): the median energy per decade lies between 1.3 and 1.9,
# and random pairs (a real face of 60+ over one under 30) give a ratio of median 0.96, p90 2.8;
# JPEG q=90 and a 1-px blur give 0.78 / 0.91. A method may do what swapping in a real face of the
# other age does, no more.
CHROMA_MEDIAN_MAX = 1.5
CHROMA_P90_MAX = 3.0


def face_ellipse_mask(size: int) -> np.ndarray:
    """(size, size) bool: the face ellipse of an aligned crop."""
    cx, cy, rx, ry = (v * size for v in FACE_ELLIPSE)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _check(faces: np.ndarray, name: str = "faces") -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[1] != faces.shape[2] or faces.dtype != np.uint8:
        raise ValueError(f"{name} must be (N, S, S, 3) uint8 aligned faces, got {faces.shape} {faces.dtype}")
    return faces


def chroma_detail_energy(faces: np.ndarray) -> np.ndarray:
    """(N,) mean squared fine chroma detail (Cr and Cb minus their blur, summed) in the face ellipse."""
    faces = _check(faces)
    size = faces.shape[1]
    mask = face_ellipse_mask(size)
    sigma = CHROMA_SIGMA_128 * size / 128.0
    out = np.zeros(len(faces), np.float64)
    for i, face in enumerate(faces):
        chroma = cv2.cvtColor(face, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)
        detail = chroma - cv2.GaussianBlur(chroma, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out[i] = float((detail[mask] ** 2).sum(axis=-1).mean())
    return out


def chroma_ratio(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """(N,) output / input chroma detail energy per face (same face size); 1 where nothing changed."""
    return (chroma_detail_energy(outputs) + CHROMA_EPS) / (chroma_detail_energy(inputs) + CHROMA_EPS)


def gray_copies(faces: np.ndarray) -> np.ndarray:
    """The faces as grayscale (luma, BT.601) in all three channels."""
    faces = _check(faces)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces])
    return np.repeat(gray[..., None], 3, axis=-1)


def channel_spread(faces: np.ndarray) -> np.ndarray:
    """(N,) the largest max - min over the three channels of any pixel of each face (0 = gray)."""
    faces = _check(faces).astype(np.int16)
    return (faces.max(axis=-1) - faces.min(axis=-1)).reshape(len(faces), -1).max(axis=1)


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel (KID) between feature sets (m, d), (n, d)."""
    import torch

    a = torch.as_tensor(np.asarray(x, np.float64))
    b = torch.as_tensor(np.asarray(y, np.float64))
    m, n, d = len(a), len(b), a.shape[1]
    if m < 2 or n < 2 or b.shape[1] != d:
        raise ValueError(f"KID needs two (>= 2, d) feature sets of equal d, got {tuple(a.shape)} and {tuple(b.shape)}")
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    value = (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    return float(value)


def fd(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (m, d), (n, d).

    Same value as ``faceage.eval.fid.frechet_distance`` on their means and covariances, computed in
    sample space: with centred sets A = X / sqrt(m - 1) and B = Y / sqrt(n - 1), the non-zero
    eigenvalues of S1 S2 = A'A B'B are the squared singular values of A B', so
    tr((S1 S2)^(1/2)) is the nuclear norm of A B'. An (m, n) SVD instead of two (d, d)
    eigendecompositions: exact, and much cheaper for a few hundred faces of 1280 features.
    """
    import torch

    a = torch.as_tensor(np.asarray(x, np.float64))
    b = torch.as_tensor(np.asarray(y, np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"FD needs two (>= 2, d) feature sets of equal d, got {tuple(a.shape)} and {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = (a - mu_a) / (len(a) - 1) ** 0.5
    cb = (b - mu_b) / (len(b) - 1) ** 0.5
    cross = torch.linalg.svdvals(ca @ cb.T).sum()
    value = (mu_a - mu_b).square().sum() + ca.square().sum() + cb.square().sum() - 2 * cross
    return float(max(value.item(), 0.0))


def face_features(faces: np.ndarray, extractor, batch: int = 64) -> np.ndarray:
    """(N, 1280) float32 MobileNetV2 features of uint8 faces (``faceage.eval.fid.FeatureExtractor``)."""
    import torch

    faces = _check(faces)
    out = []
    for i in range(0, len(faces), batch):
        x = torch.from_numpy(np.ascontiguousarray(faces[i : i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        out.append(extractor(x).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def realism_scores(edited: np.ndarray, unedited: np.ndarray, real_a: np.ndarray, real_b: np.ndarray) -> dict:
    """FD and KID of edited and unedited faces' features against real set B, and the floor A vs B.

    All three compared sets are cut to the same size n (FD is biased by set size), so the numbers
    in one row are comparable with each other.
    """
    n = min(len(edited), len(unedited), len(real_a))
    if n < 2 or len(real_b) < 2:
        return {
            "n": int(n),
            "fd": None,
            "fd_unedited": None,
            "fd_floor": None,
            "kid": None,
            "kid_unedited": None,
            "kid_floor": None,
        }
    e, u, a = edited[:n], unedited[:n], real_a[:n]
    return {
        "n": int(n),
        "n_reference": int(len(real_b)),
        "fd": fd(e, real_b),
        "fd_unedited": fd(u, real_b),
        "fd_floor": fd(a, real_b),
        "kid": kid(e, real_b),
        "kid_unedited": kid(u, real_b),
        "kid_floor": kid(a, real_b),
    }


def margin_for(gains: Sequence[np.ndarray], share: float = 0.05) -> float:
    """The smallest margin such that each null edit's gains exceed it for at most ``share`` of people."""
    margin = -np.inf
    for g in gains:
        g = np.sort(np.asarray(g, np.float64))[::-1]
        if len(g):
            margin = max(margin, float(g[int(np.floor(share * len(g)))]))
    return float(max(margin, 0.0))
