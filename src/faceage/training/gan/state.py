"""A GAN run's networks, optimizers and counters (``TrainState``), built fresh and seeded."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from faceage.models.stylegan2 import Discriminator, Generator
from faceage.training import distributed as ddp
from faceage.training.augment import AdaptiveAugment
from faceage.training.ema import make_ema
from faceage.training.gan.config import GANConfig, resolve_amp


@dataclass
class TrainState:
    """Networks, optimizers and counters of a run; everything a checkpoint holds."""

    cfg: GANConfig
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    ada: AdaptiveAugment
    device: torch.device
    dist: ddp.DistInfo = field(default_factory=ddp.DistInfo)
    step: int = 0  # iterations done (one D step + one G step each)
    nimg: int = 0  # real images shown to D, all ranks
    pl_mean: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    D_run: Callable[..., torch.Tensor] = field(init=False)  # possibly compiled D for the main steps
    G_synth: Callable[..., torch.Tensor] = field(init=False)  # possibly compiled G.synthesis

    def __post_init__(self) -> None:
        self.D_run, self.G_synth = self.D, self.G.synthesis  # eager until _setup_compile

    @property
    def amp_enabled(self) -> bool:
        return resolve_amp(self.cfg, self.device)

    @property
    def global_batch(self) -> int:
        return self.cfg.batch * self.dist.world_size


def setup_backends(cfg: GANConfig, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
        torch.backends.cudnn.benchmark = True  # fixed set of shapes: 3 resolutions x 4 ratios


def _adam(params, lr: float, cfg: GANConfig, interval: int, device: torch.device) -> torch.optim.Adam:
    # Lazy regularisation (StyleGAN2 App. C): a regulariser run every k steps gets its own
    # optimizer step, so lr and betas are rescaled by k / (k + 1) to keep the effective rates.
    c = interval / (interval + 1) if interval > 0 else 1.0
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr * c, betas=(cfg.beta1**c, cfg.beta2**c), eps=1e-8, **kwargs)


def create_state(cfg: GANConfig, device: torch.device, dist: ddp.DistInfo | None = None) -> TrainState:
    """Fresh networks (seeded by ``cfg.seed``, identical on every rank) and optimizers."""
    dist = dist or ddp.DistInfo()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G = Generator(cfg.generator_config())
        D = Discriminator(cfg.discriminator_config())
    G = G.to(device).train()
    D = D.to(device).train()
    if cfg.channels_last:
        D = D.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to's stub lacks it
    G_ema = make_ema(G)
    opt_G = _adam(G.parameters(), cfg.g_lr, cfg, cfg.pl_interval if cfg.pl_weight > 0 else 0, device)
    opt_D = _adam(D.parameters(), cfg.d_lr, cfg, cfg.r1_interval if cfg.r1_gamma > 0 else 0, device)
    state = TrainState(
        cfg=cfg,
        G=G,
        D=D,
        G_ema=G_ema,
        opt_G=opt_G,
        opt_D=opt_D,
        ada=AdaptiveAugment(cfg.augment, device=device),
        device=device,
        dist=dist,
        pl_mean=torch.zeros((), device=device),
    )
    _setup_compile(state)
    return state


def _setup_compile(state: TrainState) -> None:
    state.D_run, state.G_synth = state.D, state.G.synthesis
    if state.cfg.compile == "off":
        return
    import torch._dynamo

    # 3 input sizes for D; 12 sub-generators x (train, no-grad) for G: raise the recompile limit.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    state.D_run = torch.compile(state.D)  # R1 keeps the eager D: no double backward when compiled
    if state.cfg.compile == "all":
        state.G_synth = torch.compile(state.G.synthesis)


def seed_everything(seed: int, rank: int) -> None:
    s = seed * 1000 + rank
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)
