"""Adaptive discriminator augmentation (ADA, Karras et al. 2020), differentiable, in plain torch.

Choice: ADA rather than DiffAugment. DiffAugment applies its augmentations to every image at full
strength, which works but leaks at high strength and must be tuned per data set size; ADA applies
each augmentation with a probability ``p`` and tunes ``p`` itself from how much D overfits, so the
same settings serve UTKFace alone (~20k faces) and larger mixes. With ``p < ~0.8`` the augmented
distribution still determines the clean one, so G does not learn to produce augmented faces.

Every image D sees, real or fake, goes through the same pipeline, and every operation is
differentiable with respect to the image (G learns through it; R1 is taken through it).

Operations (each applied per sample, independently, with probability ``p``):

- ``xflip``: horizontal mirror.
- ``translate``: integer shift of up to 1/8 of the image size on each axis, reflect padding.
- ``brightness``: add N(0, 0.2) (images are in [-1, 1], so this is 0.1 of the [0, 1] range x 2).
- ``contrast``: scale around the image mean by lognormal(0, 0.5 ln 2).
- ``saturation``: scale around the per-pixel luma by lognormal(0, ln 2).
- ``cutout``: zero a square of half the image size at a uniformly random centre.

Heuristic for p (ADA's r_t): every ``interval`` D steps, r_t = E[sign(D(real))] over the reals
seen; p moves by ``sign(r_t - target) * images_seen / (speed_kimg * 1000)`` and is clamped to
[0, p_max]. r_t near 1 means D is confidently right on every training image: overfitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPS = ("xflip", "translate", "brightness", "contrast", "saturation", "cutout")

_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AugmentConfig:
    """ADA settings; ``p`` itself is state (in :class:`AdaptiveAugment`), not config."""

    ops: tuple[str, ...] = ("xflip", "translate", "brightness", "contrast", "saturation", "cutout")
    target: float = 0.6  # ADA paper: r_t target for D's real-logit sign
    interval: int = 4  # D steps between p updates
    speed_kimg: float = 100.0  # images for p to go 0 -> 1 (ADA uses 500; our runs are shorter)
    p_init: float = 0.0
    p_max: float = 1.0
    translate_frac: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # in log2 units
    saturation_std: float = 1.0  # in log2 units
    cutout_frac: float = 0.5

    def __post_init__(self) -> None:
        self.ops = tuple(self.ops)
        unknown = set(self.ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown augmentation ops {sorted(unknown)}; choose from {OPS}")
        if not 0.0 <= self.p_init <= self.p_max <= 1.0:
            raise ValueError(f"need 0 <= p_init <= p_max <= 1, got {self.p_init}, {self.p_max}")


def augment(
    images: torch.Tensor, p: float, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the ADA pipeline with probability ``p`` per op and sample; differentiable in ``images``.

    ``images`` (B, 3, H, W) float in [-1, 1]; returns the same shape and dtype. ``p == 0`` returns
    the input unchanged (and draws no random numbers).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
    if p <= 0.0 or not cfg.ops:
        return images
    b, _, h, w = images.shape
    dev = images.device
    x = images

    def mask() -> torch.Tensor:  # (B,) bool: which samples get this op
        return torch.rand(b, device=dev, generator=generator) < p

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=dev, generator=generator)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=dev, generator=generator)

    for op in cfg.ops:
        m = mask()
        if op == "xflip":
            x = torch.where(m.view(b, 1, 1, 1), x.flip(3), x)
        elif op == "translate":
            pad = max(1, int(round(cfg.translate_frac * min(h, w))))
            pad = min(pad, h - 1, w - 1)
            shift = torch.round((rand(b, 2) * 2 - 1) * pad).long() * m.view(b, 1).long()
            x = _translate(x, shift[:, 0], shift[:, 1], pad)
        elif op == "brightness":
            delta = randn(b) * cfg.brightness_std * m
            x = x + delta.view(b, 1, 1, 1).to(x.dtype)
        elif op == "contrast":
            factor = torch.exp2(randn(b) * cfg.contrast_std * m)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * factor.view(b, 1, 1, 1).to(x.dtype) + mean
        elif op == "saturation":
            factor = torch.exp2(randn(b) * cfg.saturation_std * m)
            luma = (x * torch.tensor(_LUMA, device=dev, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = (x - luma) * factor.view(b, 1, 1, 1).to(x.dtype) + luma
        elif op == "cutout":
            centre = rand(b, 2)
            half = cfg.cutout_frac / 2
            ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
            xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
            inside_y = (ys.view(1, h) - centre[:, 0:1]).abs() < half
            inside_x = (xs.view(1, w) - centre[:, 1:2]).abs() < half
            hole = inside_y.view(b, 1, h, 1) & inside_x.view(b, 1, 1, w) & m.view(b, 1, 1, 1)
            x = x * (~hole).to(x.dtype)
    return x


def _translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each sample by integer (dy, dx) pixels with reflect padding; gather, so differentiable."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = torch.arange(h, device=x.device).view(1, h) + pad - dy.view(b, 1)  # (B, H)
    cols = torch.arange(w, device=x.device).view(1, w) + pad - dx.view(b, 1)  # (B, W)
    bidx = torch.arange(b, device=x.device).view(b, 1, 1)
    out = xp.permute(0, 2, 3, 1)[bidx, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # channels_last strides, which D prefers anyway


class AdaptiveAugment:
    """Holds ADA's probability ``p`` and the r_t accumulator; ``__call__`` augments a batch.

    The accumulator lives on the device (no host sync per step); :meth:`update` reads it once per
    interval. In multi-GPU runs, all-reduce :attr:`acc` (a (2,) tensor: sum of signs, count)
    before :meth:`update` so every rank computes the same ``p``. ``state_dict`` holds plain
    numbers, saved in checkpoints for exact resume.
    """

    def __init__(self, cfg: AugmentConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.p = float(cfg.p_init)
        self.acc = torch.zeros(2, dtype=torch.float64, device=device)  # [sum sign(D(real)), count]
        self.last_rt: float | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return augment(images, self.p, self.cfg)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of D's logits on (augmented) reals to the r_t accumulator."""
        s = real_logits.detach().to(torch.float64).sign()
        self.acc[0] += s.sum()
        self.acc[1] += s.numel()

    def update(self, images_seen: int) -> float:
        """Adjust p from the accumulated r_t; ``images_seen`` = real images (all ranks) since the last
        update. Returns the new p; does nothing while no logits were accumulated."""
        total, n = self.acc.tolist()
        if n <= 0:
            return self.p
        rt = total / n
        self.last_rt = rt
        step = (
            0.0
            if rt == self.cfg.target
            else math.copysign(images_seen / (self.cfg.speed_kimg * 1000.0), rt - self.cfg.target)
        )
        self.p = float(min(max(self.p + step, 0.0), self.cfg.p_max))
        self.acc.zero_()
        return self.p

    def state_dict(self) -> dict:
        total, n = self.acc.tolist()
        return {"p": self.p, "sign_sum": total, "count": n, "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.p = float(state["p"])
        self.acc = torch.tensor(
            [float(state["sign_sum"]), float(state["count"])], dtype=torch.float64, device=self.acc.device
        )
        self.last_rt = state.get("last_rt")
