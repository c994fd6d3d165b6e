"""faceage's own differentiable age regressor: a compact ResNet with a DLDL-style age head.

This network drives *training* losses (IPCGAN's age-classification loss, encoder and direction
calibration, monitoring a GAN's age coverage). It is never the judge of results: benchmarks use the
independent estimator in ``faceage.eval.age_estimator``, and nothing may be trained against that one.

Why this head (DEX / DLDL-v2 style):

- The network outputs logits over 1-year age bins ``min_age .. max_age``; the age is the
  expectation ``sum_k p_k * age_k`` (DEX, Rothe et al. 2015). Unlike an argmax it is continuous
  and differentiable, so a generator gets a useful gradient from it, and unlike a single regression
  output it also gives a distribution, which sums into any age groups (``group_log_probs``), so the
  same network serves as IPCGAN's group classifier.
- It is trained with label-distribution learning (DLDL, Gao et al. 2017/2018): the target is a
  Gaussian around the true age, not a one-hot bin. Neighbouring ages look alike and dataset ages are
  noisy (UTKFace ages are partly apparent ages), so a soft target learns the ordinal structure, is
  robust to label noise and does not punish a 34 for a 35 as hard as a 34 for a 70. The target's
  width grows with age (``sigma = sigma_base + sigma_slope * age``) because an error of 3 years is
  large for a child and small for an 80-year-old.
- An L1 loss on the expectation (DLDL-v2) aligns training with the metric we report (MAE): the KL
  term shapes the distribution, the L1 term penalises the error of the number we actually use.

Use as a training loss (keep it frozen and in eval mode, so BatchNorm uses its running statistics)::

    regressor = load_age_regressor().requires_grad_(False)  # shipped weights, eval mode
    out = regressor(fake)                                    # fake: (B, 3, 128, 128) in [-1, 1]
    age_term = (out.age - target_age).abs().mean()
    group_term = F.nll_loss(group_log_probs(out.logits, regressor.bin_ages, [21, 31, 41, 51]), group)

Convention: input images are torch (B, 3, H, W) float in [-1, 1], RGB, aligned faces (FFHQ-style
crop from ``faceage.faces``); 64 <= H, W <= 256. Inputs whose size differs from
``cfg.input_size`` are resized inside ``forward`` with antialiased bilinear interpolation (still
differentiable). Values outside [-1, 1] are accepted (a generator's raw output may overshoot).

The network is a pure ``nn.Module``; ``faceage.models.io.save_age_regressor`` / ``load_age_regressor``
write and read it as fp16 safetensors plus a config JSON, strictly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.config import JsonConfig

MIN_INPUT, MAX_INPUT = 64, 256


@dataclass(frozen=True)
class AgeRegressorConfig(JsonConfig):
    """Architecture and label space; saved next to the weights as JSON."""

    # Working resolution: inputs of other sizes are resized to this inside forward. 64 px keeps
    # CPU training and use as a loss cheap; age cues (wrinkles, face shape) survive at 64 px.
    input_size: int = 64
    # Width of the stem and of each stage; every stage after the first halves the resolution.
    stem_channels: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 256)
    # Residual blocks per stage. One block at the two high resolutions keeps CPU cost low; the last
    # stages (8x8 and 4x4 maps at 64 px, many channels) hold most of the parameters and cost little.
    # Measured on 2 CPU threads, batch 64 at 64 px: (1, 1, 2, 2) trains as fast as (1, 2, 2, 1)
    # with 2.7 M instead of 1.6 M parameters.
    blocks: tuple[int, ...] = (1, 1, 2, 2)
    # Dropout before the classifier: the label space is 101 bins and datasets are small.
    dropout: float = 0.2
    # Age bins in whole years, inclusive. Labels above max_age are clamped (UTKFace has a few
    # centenarians up to 116); the expectation can therefore never exceed max_age.
    min_age: int = 0
    max_age: int = 100

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so configs compare equal after a round trip.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if not MIN_INPUT <= self.input_size <= MAX_INPUT:
            raise ValueError(f"input_size must be in [{MIN_INPUT}, {MAX_INPUT}], got {self.input_size}")
        if len(self.channels) != len(self.blocks) or not self.channels:
            raise ValueError(f"channels {self.channels} and blocks {self.blocks} must be non-empty and of equal length")
        if min(self.blocks) < 1 or min(self.channels) < 1 or self.stem_channels < 1:
            raise ValueError("channels and blocks must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.min_age < self.max_age:
            raise ValueError(f"need 0 <= min_age < max_age, got {self.min_age}, {self.max_age}")

    @property
    def num_bins(self) -> int:
        return self.max_age - self.min_age + 1


class AgeOutput(NamedTuple):
    """What the regressor returns for a batch of B faces."""

    logits: torch.Tensor  # (B, num_bins) over ages min_age..max_age
    age: torch.Tensor  # (B,) expected age in years, differentiable


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, BN, ReLU) with a 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # Zero-init the last BN so each block starts as identity (Goyal et al. 2017): stabler early
        # training with large learning rates.
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class AgeRegressor(nn.Module):
    """Compact ResNet: aligned face (B, 3, H, W) in [-1, 1] -> ``AgeOutput(logits, age)``.

    About 2.7 M parameters with the default config (5.5 MB in fp16). The stem halves the
    resolution, each later stage halves it again, then global average pooling and a linear layer
    over the age bins.
    """

    bin_ages: torch.Tensor  # a registered buffer

    def __init__(self, config: AgeRegressorConfig | None = None) -> None:
        super().__init__()
        self.cfg = config or AgeRegressorConfig()
        c = self.cfg
        self.stem = nn.Sequential(
            nn.Conv2d(3, c.stem_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c.stem_channels),
            nn.ReLU(inplace=True),
        )
        stages, width = [], c.stem_channels
        for index, (out_channels, count) in enumerate(zip(c.channels, c.blocks)):
            blocks = []
            for b in range(count):
                stride = 2 if (b == 0 and index > 0) else 1
                blocks.append(BasicBlock(width, out_channels, stride))
                width = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(width, c.num_bins)
        # Bin centres in years; a buffer so it follows .to(device) but is rebuilt, not saved.
        self.register_buffer("bin_ages", torch.arange(c.min_age, c.max_age + 1, dtype=torch.float32), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """Check the shape and resize to ``cfg.input_size`` (antialiased bilinear, differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if not (MIN_INPUT <= h <= MAX_INPUT and MIN_INPUT <= w <= MAX_INPUT):
            raise ValueError(f"image size must be between {MIN_INPUT} and {MAX_INPUT} px, got {h}x{w}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got dtype {images.dtype}")
        size = self.cfg.input_size
        if (h, w) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return images

    def forward(self, images: torch.Tensor) -> AgeOutput:
        x = self.prepare_input(images)
        x = self.stages(self.stem(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        logits = self.head(self.dropout(x))
        return AgeOutput(logits, expected_age(logits, self.bin_ages))


def expected_age(logits: torch.Tensor, bin_ages: torch.Tensor) -> torch.Tensor:
    """Expectation of the bin ages under softmax(logits): (B, K), (K,) -> (B,). Computed in fp32."""
    return torch.softmax(logits.float(), dim=-1) @ bin_ages.float()


def gaussian_age_targets(
    ages: torch.Tensor, bin_ages: torch.Tensor, sigma_base: float = 1.0, sigma_slope: float = 0.05
) -> torch.Tensor:
    """Label distributions for DLDL: a discretised Gaussian per age, normalised over the bins.

    ``ages`` (B,) in years (clamped to the bin range) -> (B, K). The width
    ``sigma = sigma_base + sigma_slope * age`` is 1.25 years at age 5, 2.5 at 30 and 5 at 80.
    """
    ages = ages.float().clamp(float(bin_ages[0]), float(bin_ages[-1]))
    sigma = (sigma_base + sigma_slope * ages).clamp_min(1e-3)[:, None]
    log_q = -0.5 * ((bin_ages.float()[None, :] - ages[:, None]) / sigma) ** 2
    return torch.softmax(log_q, dim=-1)


def age_loss(
    output: AgeOutput,
    ages: torch.Tensor,
    bin_ages: torch.Tensor,
    l1_weight: float = 1.0,
    sigma_base: float = 1.0,
    sigma_slope: float = 0.05,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DLDL-v2 training loss: KL(target || softmax(logits)) + ``l1_weight`` * |E[age] - age|.

    Returns the scalar loss and its parts (floats, for logging). Labels beyond the bin range are
    clamped, so the L1 term never asks for an age the head cannot express.
    """
    targets = gaussian_age_targets(ages, bin_ages, sigma_base, sigma_slope)
    log_p = torch.log_softmax(output.logits.float(), dim=-1)
    kl = F.kl_div(log_p, targets, reduction="batchmean")
    clamped = ages.float().clamp(float(bin_ages[0]), float(bin_ages[-1]))
    l1 = (output.age - clamped).abs().mean()
    loss = kl + l1_weight * l1
    return loss, {"kl": float(kl.detach()), "l1": float(l1.detach())}


def group_log_probs(logits: torch.Tensor, bin_ages: torch.Tensor, edges: Sequence[float]) -> torch.Tensor:
    """Log-probabilities of age groups, summed from the bins: use as a G-way classifier.

    ``edges`` are the G-1 ascending lower bounds of groups 1..G-1 (group 0 is everything below
    ``edges[0]``). Example: IPCGAN's groups <=20, 21-30, 31-40, 41-50, 50+ are ``edges=[21, 31, 41, 51]``;
    the design's decade groups 0,10,20,30,50 could be ``[10, 20, 30, 50]`` (groups 0-9, 10-19, ...,
    50+). Returns (B, G); ``F.nll_loss(group_log_probs(...), group_index)`` is the classification loss.
    """
    edges_t = torch.as_tensor(list(edges), dtype=torch.float32, device=logits.device)
    if edges_t.ndim != 1 or edges_t.numel() == 0 or bool((edges_t[1:] <= edges_t[:-1]).any()):
        raise ValueError(f"edges must be a non-empty ascending sequence, got {list(edges)}")
    group = torch.bucketize(bin_ages.float().to(logits.device), edges_t, right=True)  # (K,) group index per bin
    log_p = torch.log_softmax(logits.float(), dim=-1)
    num_groups = edges_t.numel() + 1
    out = []
    for g in range(num_groups):
        mask = group == g
        if not bool(mask.any()):
            raise ValueError(f"age group {g} of edges {list(edges)} contains no bin")
        out.append(torch.logsumexp(log_p[:, mask], dim=-1))
    return torch.stack(out, dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "AgeOutput",
    "AgeRegressor",
    "AgeRegressorConfig",
    "age_loss",
    "count_parameters",
    "expected_age",
    "gaussian_age_targets",
    "group_log_probs",
]
