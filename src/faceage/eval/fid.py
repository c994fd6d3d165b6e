"""Fréchet distance (FD) between image sets on MobileNetV2 ImageNet features.

Realism metric of faceage's own runs: the Fréchet distance between two Gaussians fitted to the
global-average-pooled 1280-d MobileNetV2 features of real and generated faces. It is *not* FID (no
Inception network), so its values are comparable across faceage runs only, not with papers.

Convention:
    images are torch (B, 3, H, W) float in [-1, 1] at any size; they are resized to 224x224
    (bilinear, antialiased when shrinking) before the feature net. Compare a sub-model's output at
    resolution r only with real statistics computed at the same r (real faces box-downsampled to r
    first), so both sides lose the same detail.

Statistics are accumulated in float64 (running sums), so any number of batches can be merged, and
reference statistics are cached as ``.npz`` under a hash of everything that defines them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceage.atomic import atomic_write
from faceage.models.layers import box_downsample
from faceage.models.mobilenet import WEIGHTS_ID, MobileNetV2, imagenet_normalize, load_mobilenet_v2

FEATURE_SIZE = 224


class FeatureExtractor:
    """MobileNetV2 pooled features for images in [-1, 1]; stateless apart from the network."""

    def __init__(self, device: str | torch.device = "cpu", net: MobileNetV2 | None = None, size: int = FEATURE_SIZE):
        self.device = torch.device(device)
        self.net = (net if net is not None else load_mobilenet_v2()).to(self.device).eval()
        self.size = size  # 224 for every reported number; smaller only in tests

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 1280) float32 features (on the extractor's device)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32).clamp(-1.0, 1.0)
        if x.shape[-2:] != (self.size, self.size):
            shrink = x.shape[-1] > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink)
        # fp32 (TF32 on GPUs when enabled) rather than bf16: FD is sensitive to feature noise.
        with torch.autocast(self.device.type, enabled=False):
            return self.net.forward_features(imagenet_normalize(x)).float()


class FeatureStats:
    """Running mean and covariance of feature vectors, in float64; merge-able.

    Sums are kept as CPU float64 torch tensors: torch's LAPACK/BLAS respects
    ``torch.set_num_threads``, whereas numpy's OpenBLAS spins all its threads and was 10x slower
    on a shared CPU.
    """

    def __init__(self, dim: int = MobileNetV2.feature_dim):
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        f = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) features, got shape {tuple(f.shape)}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D) as numpy float64; needs at least 2 samples."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, have {self.n}")
        mu = self.sum / self.n
        cov = (self.sum_outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.numpy(), cov.numpy()

    def to_arrays(self) -> dict[str, np.ndarray]:
        mu, cov = self.mean_cov()
        return {"mu": mu, "sigma": cov, "n": np.array(self.n)}


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for Gaussians N(mu1, S1), N(mu2, S2).

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2), which needs no scipy and no complex
    arithmetic; tiny negative eigenvalues from round-off are clipped to zero. float64 throughout.
    """
    m1, m2 = (torch.as_tensor(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(np.asarray(m, np.float64)) for m in (sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or tuple(s1.shape) != (m1.numel(), m1.numel()):
        raise ValueError(
            f"shape mismatch: mu {tuple(m1.shape)} vs {tuple(m2.shape)}, sigma {tuple(s1.shape)} vs {tuple(s2.shape)}"
        )
    w1, v1 = torch.linalg.eigh((s1 + s1.T) / 2)
    sqrt_s1 = (v1 * w1.clamp(min=0).sqrt()) @ v1.T
    m = sqrt_s1 @ s2 @ sqrt_s1
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    diff = m1 - m2
    fd = diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_covmean
    return float(max(fd.item(), 0.0))


def fd_between(stats_a: FeatureStats | dict, stats_b: FeatureStats | dict) -> float:
    """Fréchet distance between two ``FeatureStats`` (or their ``to_arrays()`` dicts)."""
    a = stats_a.to_arrays() if isinstance(stats_a, FeatureStats) else stats_a
    b = stats_b.to_arrays() if isinstance(stats_b, FeatureStats) else stats_b
    return frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"])


def stats_of_images(
    batches: Iterable[torch.Tensor], extractor: FeatureExtractor, resolution: int | None = None
) -> FeatureStats:
    """Feature statistics of image batches ((B,3,H,W) in [-1,1]), box-downsampled to ``resolution``."""
    stats = FeatureStats()
    for images in batches:
        x = images.to(extractor.device, torch.float32)
        if resolution is not None:
            x = box_downsample(x, resolution)
        stats.add(extractor(x))
    return stats


def stats_cache_key(options: dict) -> str:
    """Stable short hash of the options that define a set of statistics (feature net included)."""
    payload = json.dumps({"features": WEIGHTS_ID, **options}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_stats(cache_dir: str | Path, options: dict, compute: Callable[[], FeatureStats]) -> dict[str, np.ndarray]:
    """Load statistics cached under ``hash(options)`` or compute, save atomically and return them.

    ``options`` must name everything that changes the statistics (data identity, split, number of
    images, resolution, seed); the feature net's identity is added automatically. The options are
    stored next to the arrays so a cache file says what it holds.
    """
    path = Path(cache_dir) / f"fdstats-{stats_cache_key(options)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in ("mu", "sigma", "n")}
    arrays = compute().to_arrays()
    saved = {**arrays, "options": np.array(json.dumps(options, sort_keys=True, default=str))}
    atomic_write(path, lambda f: np.savez(f, **saved))  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return arrays
