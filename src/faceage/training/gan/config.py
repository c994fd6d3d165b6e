"""What defines a GAN training run's maths (``GANConfig``), saved in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import torch

from faceage.models.stylegan2 import DiscriminatorConfig, GeneratorConfig
from faceage.training.augment import AugmentConfig

STATE_FORMAT = "faceage-gan-train"


@dataclass
class GANConfig:
    """Everything that defines a training run's maths; saved in every checkpoint.

    Defaults are for 128 px faces on one H100 (batch 64 per GPU, bf16). Runtime-only options
    (time limit, workers, logging cadence) are in :class:`RunOptions`.
    """

    # -- networks (GeneratorConfig / DiscriminatorConfig) --
    resolution: int = 128
    channel_max: int = 256  # G and D; the reference width for 128 px (about 15 kimg/min on one H100)
    # channels(res) = min(channel_base // res, channel_max): 8192 keeps 256 channels up to 32 px and
    # halves them at 64/128 px, so the full 128 px generator runs in ~44 ms on a 2-core CPU (16384:
    # 88 ms, over the 60 ms target; benchmarks/results/generator.md).
    channel_base: int = 8192
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    d_channel_max: int | None = None  # None = channel_max
    mbstd_group: int = 4
    # -- sub-generators: output resolutions x channel ratios sampled per step --
    sub_resolutions: tuple[int, ...] = (32, 64, 128)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    # MSE is a per-pixel mean on [-1, 1] images: at rmse 0.1 its gradient on a 32 px image is
    # ~700x smaller than a typical adversarial gradient, so a weight of 1 would do nothing.
    # 20 makes the loss value comparable to the adversarial terms (MSE 0.01 -> 0.2) while
    # staying gradient-wise well below them. Not tuned on a GPU yet: watch `cons` and per-sub FD.
    cons_weight: float = 20.0
    # -- optimisation (StyleGAN2-ADA "paper256", scaled to 128 px) --
    batch: int = 64  # per GPU
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99
    # R1 gamma: paper256 uses 1 at 256 px; R1 scales with pixel count, so 1 * (128/256)^2.
    r1_gamma: float = 0.25
    r1_interval: int = 16
    pl_weight: float = 0.0  # path-length regulariser off by default (cost; ADA small-data configs)
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    ema_kimg: float = 20.0  # ADA "auto": batch * 10 / 32 kimg at batch 64
    ema_rampup: float | None = 0.05
    mirror: bool = True  # x-flipped copies of the data set (non-leaking: faces are symmetric)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    # -- numerics / speed --
    amp: str = "auto"  # "bf16" | "off" | "auto" (bf16 on CUDA, off on CPU)
    channels_last: bool = True  # D and its inputs (plain convs; G's modulated convs stay NCHW)
    tf32: bool = True
    compile: str = "off"  # "off" | "d" (D only, cheap) | "all" (also G synthesis: minutes of compile)

    def __post_init__(self) -> None:
        self.sub_resolutions = tuple(int(r) for r in self.sub_resolutions)
        self.ratios = tuple(float(c) for c in self.ratios)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        g_res = self.generator_config().resolutions
        bad = [r for r in self.sub_resolutions if r not in g_res]
        if bad:
            raise ValueError(f"sub resolutions {bad} not available; the generator offers {g_res}")
        if any(not 0 < c <= 1 for c in self.ratios):
            raise ValueError(f"channel ratios must be in (0, 1], got {self.ratios}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.compile not in ("off", "d", "all"):
            raise ValueError(f"compile must be off, d or all, got {self.compile!r}")
        if self.batch < 2:
            raise ValueError("batch per GPU must be at least 2 (minibatch-std, statistics)")

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            resolution=self.resolution,
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            mapping_layers=self.mapping_layers,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(
            resolution=self.resolution,
            channel_base=self.channel_base,
            channel_max=self.d_channel_max or self.channel_max,
            mbstd_group=self.mbstd_group,
        )

    def sub_models(self) -> list[tuple[int, float]]:
        """The (resolution, ratio) pairs sampled besides the full model, in a fixed order."""
        return [(r, c) for r in self.sub_resolutions for c in self.ratios if not (r == self.resolution and c == 1.0)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sub_resolutions"] = list(self.sub_resolutions)
        d["ratios"] = list(self.ratios)
        d["augment"]["ops"] = list(self.augment.ops)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GANConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GANConfig fields: {sorted(unknown)}")
        return cls(**d)


def resolve_amp(cfg: GANConfig, device: torch.device) -> bool:
    if cfg.amp == "auto":
        return device.type == "cuda"
    return cfg.amp == "bf16"
