"""StyleGAN2 training with the patent's sampled sub-generators (seed 001, S27-S29), resumable.

One iteration (all ranks draw the same sub-generator; each rank its own images and noise):

1. Sample a sub-generator (r, c): r from ``sub_resolutions``, c from ``ratios``, uniformly over
   every pair except the full model (R, 1.0). The full model is trained at *every* step as well
   (the "sandwich rule" of slimmable networks), because (a) it is the teacher of the consistency
   loss and (b) it is what ships at full quality. So per step: full model with probability 1, and
   each of the other 11 pairs (3 resolutions x 4 ratios - 1) with probability 1/11.
2. D step: reals (augmented) vs fakes of the full model at R, and reals box-downsampled to r
   (augmented) vs the sub-generator's fakes at r; logistic loss, summed over the two pairs.
   Every ``r1_interval`` D steps a separate lazy R1 step (fp32, through the augmentation) at
   both resolutions, with gamma at r scaled by (r / R)^2 (R1 grows with the pixel count).
3. G step: the same W+ codes go through the full model and the sub-generator with the *same*
   noise (RNG forked), non-saturating adversarial loss on both, plus the patent's consistency
   loss ``cons_weight * MSE(G_{r,c}(w), box_down_r(G(w)))`` with G(w) detached (S29).
4. EMA of G (half-life in kimg, ramp-up), ADA p update every ``augment.interval`` steps.

Mixed precision: forward passes under bf16 autocast on CUDA; losses, R1 and optimizer in fp32.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceage.atomic import atomic_write, write_json_atomic
from faceage.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from faceage.training import distributed as ddp
from faceage.training.augment import AdaptiveAugment, AugmentConfig
from faceage.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from faceage.training.ema import ema_beta, make_ema, update_ema
from faceage.training.losses import (
    box_downsample,
    consistency_loss,
    d_logistic_loss,
    g_nonsaturating_loss,
    path_length_penalty,
    r1_penalty,
)

STATE_FORMAT = "faceage-gan-train"


@dataclass
class GANConfig:
    """Everything that defines a training run's maths; saved in every checkpoint.

    Defaults are for 128 px faces on one H100 (batch 64 per GPU, bf16). Runtime-only options
    (time limit, workers, logging cadence) are in :class:`RunOptions`.
    """

    # -- networks (GeneratorConfig / DiscriminatorConfig) --
    resolution: int = 128
    channel_max: int = 256  # G and D; 256 is the DESIGN.md reference point (15 kimg/min, H100)
    # channels(res) = min(channel_base // res, channel_max): 8192 keeps 256 channels up to 32 px and
    # halves them at 64/128 px, so the full 128 px generator runs in ~44 ms on a 2-core CPU (16384:
    # 88 ms, over the 60 ms target; benchmarks/results/generator.md).
    channel_base: int = 8192
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    d_channel_max: int | None = None  # None = channel_max
    mbstd_group: int = 4
    # -- patent sub-generators --
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
            resolution=self.resolution, z_dim=self.z_dim, w_dim=self.w_dim, mapping_layers=self.mapping_layers,
            channel_base=self.channel_base, channel_max=self.channel_max,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(
            resolution=self.resolution, channel_base=self.channel_base,
            channel_max=self.d_channel_max or self.channel_max, mbstd_group=self.mbstd_group,
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


@dataclass
class RunOptions:
    """How (not what) to train: stop conditions, I/O cadence, data loading."""

    data: Path
    out: Path
    kimg: float = 1000.0  # stop when this many thousand real images were shown (total, all ranks)
    minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    max_steps: int | None = None
    device: str = "auto"
    split: str = "train"
    workers: int = 6
    log_every: int = 50  # steps
    ckpt_kimg: float = 50.0
    ckpt_minutes: float = 4.0
    keep_ckpts: int = 2
    fd_kimg: float = 50.0  # quick FD every this many kimg (0 = off)
    fd_n: int = 2000
    grid_seeds: int = 8
    compact_to: Path | None = None  # also write a compact (fp16, no optimizer) checkpoint here at the end
    started: float = field(default_factory=time.monotonic)  # wall-clock origin of --minutes


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
    pl_mean: torch.Tensor | None = None
    D_run: Callable | None = None  # possibly compiled D for the main steps
    G_synth: Callable | None = None  # possibly compiled G.synthesis

    @property
    def amp_enabled(self) -> bool:
        return resolve_amp(self.cfg, self.device)

    @property
    def global_batch(self) -> int:
        return self.cfg.batch * self.dist.world_size


# -- set-up ------------------------------------------------------------------------------------


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def resolve_amp(cfg: GANConfig, device: torch.device) -> bool:
    if cfg.amp == "auto":
        return device.type == "cuda"
    return cfg.amp == "bf16"


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
        D = D.to(memory_format=torch.channels_last)
    G_ema = make_ema(G)
    opt_G = _adam(G.parameters(), cfg.g_lr, cfg, cfg.pl_interval if cfg.pl_weight > 0 else 0, device)
    opt_D = _adam(D.parameters(), cfg.d_lr, cfg, cfg.r1_interval if cfg.r1_gamma > 0 else 0, device)
    state = TrainState(
        cfg=cfg, G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D,
        ada=AdaptiveAugment(cfg.augment, device=device), device=device, dist=dist,
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


# -- one iteration -----------------------------------------------------------------------------


def sample_submodel(cfg: GANConfig, step: int) -> tuple[int, float] | None:
    """The step's sub-generator, from an RNG shared by all ranks (a pure function of seed, step)."""
    subs = cfg.sub_models()
    if not subs:
        return None
    return random.Random(cfg.seed * 1_000_003 + step).choice(subs)


def sample_ws(G: Generator, batch: int, style_mixing: float, device: torch.device) -> torch.Tensor:
    """W+ codes (B, num_ws, w_dim); with probability ``style_mixing`` a sample switches to a second
    w at a random layer (per sample, no host sync)."""
    z = torch.randn(batch, G.cfg.z_dim, device=device)
    w = G.mapping(z)
    ws = w.unsqueeze(1).expand(-1, G.num_ws, -1)
    if style_mixing > 0:
        w2 = G.mapping(torch.randn(batch, G.cfg.z_dim, device=device))
        cutoff = torch.randint(1, G.num_ws, (batch,), device=device)
        mix = torch.rand(batch, device=device) < style_mixing
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, G.num_ws))
        layer = torch.arange(G.num_ws, device=device).view(1, -1)
        ws = torch.where((layer >= cutoff.view(-1, 1)).unsqueeze(-1), w2.unsqueeze(1), ws)
    return ws


def generate_pair(state: TrainState, ws: torch.Tensor, sub: tuple[int, float] | None):
    """(full image at R, sub-generator image at r or None) from the same ws and the same noise."""
    synth = state.G_synth
    if sub is None:
        return synth(ws), None
    devices = [ws.device] if ws.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=ws.device.type if devices else "cuda"):
        full = synth(ws)
    # The RNG is back where the full pass started: the sub-generator draws the same noise maps
    # (noise is (B, 1, H, W) per layer, independent of the channel ratio).
    sub_img = synth(ws, resolution=sub[0], ratio=sub[1])
    return full, sub_img


def _autocast(state: TrainState):
    return torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=state.amp_enabled)


def _cl(state: TrainState, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if state.cfg.channels_last else x


def _opt_step(opt: torch.optim.Optimizer, module: nn.Module) -> None:
    ddp.all_reduce_gradients(list(module.parameters()))
    opt.step()


def d_main_step(state: TrainState, reals: torch.Tensor, sub: tuple[int, float] | None) -> dict[str, torch.Tensor]:
    """Logistic D loss on (reals, full fakes) at R and (downsampled reals, sub fakes) at r."""
    G, D, cfg = state.G, state.D, state.cfg
    G.requires_grad_(False)
    D.requires_grad_(True)
    with torch.no_grad(), _autocast(state):
        ws = sample_ws(G, reals.shape[0], cfg.style_mixing, state.device)
        full, sub_img = generate_pair(state, ws, sub)
    pairs = [(reals, full)]
    if sub_img is not None:
        pairs.append((box_downsample(reals, sub[0]), sub_img))
    loss = torch.zeros((), device=state.device)
    real_logits = []
    with _autocast(state):
        for real, fake in pairs:
            lr = state.D_run(_cl(state, state.ada(real.float())))
            lf = state.D_run(_cl(state, state.ada(fake.float())))
            loss = loss + d_logistic_loss(lr, lf)
            real_logits.append(lr.detach())
    state.opt_D.zero_grad(set_to_none=True)
    loss.backward()
    _opt_step(state.opt_D, D)
    logits = torch.cat(real_logits).float()
    state.ada.accumulate(logits)
    return {"loss_d": loss.detach(), "d_real": logits.mean(), "d_real_sign": logits.sign().mean()}


def d_r1_step(state: TrainState, reals: torch.Tensor, sub: tuple[int, float] | None) -> dict[str, torch.Tensor]:
    """Lazy R1 at R (and at r), fp32, gradient through the augmentation; weighted by the interval."""
    D, cfg = state.D, state.cfg
    D.requires_grad_(True)
    terms = [(reals, cfg.r1_gamma)]
    if sub is not None and sub[0] != cfg.resolution:
        terms.append((box_downsample(reals, sub[0]), cfg.r1_gamma * (sub[0] / cfg.resolution) ** 2))
    loss = torch.zeros((), device=state.device)
    penalty_full = None
    with torch.autocast(state.device.type, enabled=False):
        for real, gamma in terms:
            x = real.detach().float().requires_grad_(True)
            logits = D(_cl(state, state.ada(x)))
            pen = r1_penalty(logits, x)
            penalty_full = pen.detach() if penalty_full is None else penalty_full
            loss = loss + pen * (gamma / 2) * cfg.r1_interval
    state.opt_D.zero_grad(set_to_none=True)
    loss.backward()
    _opt_step(state.opt_D, D)
    return {"r1": penalty_full}


def g_main_step(state: TrainState, sub: tuple[int, float] | None) -> dict[str, torch.Tensor]:
    """Non-saturating loss on the full model and the sub-generator + patent consistency loss."""
    G, D, cfg = state.G, state.D, state.cfg
    G.requires_grad_(True)
    D.requires_grad_(False)
    with _autocast(state):
        ws = sample_ws(G, cfg.batch, cfg.style_mixing, state.device)
        full, sub_img = generate_pair(state, ws, sub)
        adv_full = g_nonsaturating_loss(state.D_run(_cl(state, state.ada(full.float()))))
        adv_sub = (g_nonsaturating_loss(state.D_run(_cl(state, state.ada(sub_img.float()))))
                   if sub_img is not None else torch.zeros((), device=state.device))
    cons = consistency_loss(sub_img, full) if sub_img is not None else torch.zeros((), device=state.device)
    loss = adv_full + adv_sub + cfg.cons_weight * cons
    state.opt_G.zero_grad(set_to_none=True)
    loss.backward()
    _opt_step(state.opt_G, G)
    return {"loss_g_full": adv_full.detach(), "loss_g_sub": adv_sub.detach(), "cons": cons.detach()}


def g_pl_step(state: TrainState) -> dict[str, torch.Tensor]:
    """Lazy path-length regularisation of the full model (fp32), weighted by the interval."""
    G, cfg = state.G, state.cfg
    G.requires_grad_(True)
    batch = max(1, cfg.batch // cfg.pl_batch_shrink)
    with torch.autocast(state.device.type, enabled=False):
        ws = sample_ws(G, batch, cfg.style_mixing, state.device).detach().requires_grad_(True)
        img = G.synthesis(ws)
        pen, state.pl_mean, _ = path_length_penalty(img, ws, state.pl_mean, cfg.pl_decay)
    state.opt_G.zero_grad(set_to_none=True)
    (pen * cfg.pl_weight * cfg.pl_interval + 0 * img.sum()).backward()
    _opt_step(state.opt_G, G)
    if state.dist.enabled:  # keep the running mean identical on every rank
        ddp.all_reduce_sum_(state.pl_mean)
        state.pl_mean /= state.dist.world_size
    return {"pl": pen.detach()}


def train_step(state: TrainState, reals: torch.Tensor) -> dict[str, torch.Tensor]:
    """One iteration: D (+R1), G (+PL), EMA, ADA. ``reals`` (B, 3, R, R) float in [-1, 1]."""
    cfg = state.cfg
    if reals.shape[0] != cfg.batch or reals.shape[-1] != cfg.resolution:
        raise ValueError(f"expected reals ({cfg.batch}, 3, {cfg.resolution}, {cfg.resolution}), got {tuple(reals.shape)}")
    sub = sample_submodel(cfg, state.step)
    stats = d_main_step(state, reals, sub)
    if cfg.r1_gamma > 0 and cfg.r1_interval > 0 and state.step % cfg.r1_interval == 0:
        stats.update(d_r1_step(state, reals, sub))
    stats.update(g_main_step(state, sub))
    if cfg.pl_weight > 0 and cfg.pl_interval > 0 and state.step % cfg.pl_interval == 0:
        stats.update(g_pl_step(state))
    state.nimg += state.global_batch
    state.step += 1
    if state.dist.enabled and state.step % max(cfg.augment.interval, 1) == 0:
        # w_avg (the truncation centre) is a buffer each rank updates from its own w's; average it
        # now and then so every rank (and the checkpoint rank 0 writes) holds the same value.
        ddp.all_reduce_sum_(state.G.w_avg)
        state.G.w_avg /= state.dist.world_size
    beta = ema_beta(state.global_batch, state.nimg, cfg.ema_kimg, cfg.ema_rampup)
    update_ema(state.G_ema, state.G, beta)
    if cfg.augment.interval > 0 and state.step % cfg.augment.interval == 0 and cfg.augment.ops:
        ddp.all_reduce_sum_(state.ada.acc)  # global r_t, so p stays identical on every rank
        state.ada.update(state.global_batch * cfg.augment.interval)
    stats["sub_res"] = torch.tensor(float(sub[0]) if sub else float(cfg.resolution))
    stats["sub_ratio"] = torch.tensor(float(sub[1]) if sub else 1.0)
    return stats


# -- state (de)serialisation -------------------------------------------------------------------


def training_state_dict(state: TrainState, data_stats: dict | None = None) -> dict:
    """The checkpoint dict. Collective in multi-GPU runs (gathers every rank's RNG state)."""
    rng = ddp.all_gather_objects(capture_rng_state())
    return {
        "format": STATE_FORMAT,
        "config": state.cfg.to_dict(),
        "G": state.G.state_dict(),
        "D": state.D.state_dict(),
        "G_ema": state.G_ema.state_dict(),
        "opt_G": state.opt_G.state_dict(),
        "opt_D": state.opt_D.state_dict(),
        "augment": state.ada.state_dict(),
        "progress": {"step": state.step, "nimg": state.nimg, "pl_mean": float(state.pl_mean)},
        "rng": rng,
        "world_size": state.dist.world_size,
        "data": data_stats or {},
        "torch_version": torch.__version__,
    }


def _load_module(module: nn.Module, sd: dict, what: str) -> None:
    from faceage.models.io import load_state_dict_strict

    load_state_dict_strict(module, {k: v for k, v in sd.items()}, what)


def _load_optimizer(opt: torch.optim.Optimizer, sd: dict) -> None:
    keep = [{k: g[k] for k in ("fused", "foreach", "capturable", "lr", "betas") if k in g} for g in opt.param_groups]
    opt.load_state_dict(sd)
    for group, kept in zip(opt.param_groups, keep):
        group.update(kept)  # this run's lr/betas and kernel choice, not the saved ones
        if group.get("fused") or group.get("capturable"):  # e.g. a CPU checkpoint resumed on a GPU
            for p in group["params"]:
                st = opt.state.get(p)
                if st and isinstance(st.get("step"), torch.Tensor):
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def load_training_state(state: TrainState, ckpt: dict, restore_rng: bool = True) -> list[str]:
    """Fill ``state`` from a checkpoint dict; returns warnings for anything re-initialised."""
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"not a GAN training checkpoint (format {ckpt.get('format')!r})")
    notes: list[str] = []
    if "compact" in ckpt:
        notes.append(f"compact checkpoint ({ckpt['compact']}): weights were stored in float16, optimizer "
                     f"state {ckpt['compact']['optimizer']}; this resume is approximate, not bit-exact")
    for name in ("G", "G_ema", "D"):
        if name in ckpt:
            _load_module(getattr(state, name), ckpt[name], f"checkpoint {name}")
        elif name == "G_ema" and "G" in ckpt:
            _load_module(state.G_ema, ckpt["G"], "checkpoint G (as G_ema)")
            notes.append("checkpoint has no G_ema: the average restarts from G")
        else:
            notes.append(f"checkpoint has no {name}: it is freshly initialised")
    for name in ("opt_G", "opt_D"):
        if name in ckpt:
            _load_optimizer(getattr(state, name), ckpt[name])
        else:
            notes.append(f"checkpoint has no {name}: Adam moments restart from zero")
    if "augment" in ckpt:
        state.ada.load_state_dict(ckpt["augment"])
    prog = ckpt.get("progress", {})
    state.step = int(prog.get("step", 0))
    state.nimg = int(prog.get("nimg", 0))
    state.pl_mean = torch.tensor(float(prog.get("pl_mean", 0.0)), device=state.device)
    if restore_rng:
        rngs = ckpt.get("rng") or []
        if len(rngs) == state.dist.world_size:
            restore_rng_state(rngs[state.dist.rank])
        else:
            notes.append(f"checkpoint has RNG states for {len(rngs)} ranks, this run has "
                         f"{state.dist.world_size}: random streams are reseeded (not bit-exact)")
            _seed_everything(state.cfg.seed + 7919 * state.step, state.dist.rank)
    return notes


def init_from_weights(state: TrainState, folder: str | Path) -> list[str]:
    """Weights-only start: G and G_ema from a shipped model folder; D and optimizers fresh."""
    from faceage.models.io import load_model

    g = load_model(folder, expect=Generator)
    if g.cfg != state.G.cfg:
        raise ValueError(f"weights in {folder} have GeneratorConfig {g.cfg}, this run needs {state.G.cfg}")
    sd = {k: v.float() for k, v in g.state_dict().items()}
    _load_module(state.G, sd, f"{folder}")
    _load_module(state.G_ema, sd, f"{folder}")
    return [
        f"resuming from weights only ({folder}): G and G_ema start from these weights (fp16 -> fp32); "
        "D, both Adam optimizers, ADA p, step and kimg counters are RE-INITIALISED. Expect a few kimg "
        "of instability while D catches up; this is not an exact resume."
    ]


def _seed_everything(seed: int, rank: int) -> None:
    s = seed * 1000 + rank
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def export_ema(ckpt_path: str | Path, out_folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write a checkpoint's G_ema as a shippable model folder (config.json + fp16 safetensors)."""
    from faceage.models.io import save_model

    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt_path} is not a GAN training checkpoint")
    cfg = GANConfig.from_dict(ckpt["config"])
    G = Generator(cfg.generator_config())
    _load_module(G, ckpt["G_ema"], f"{ckpt_path} G_ema")
    return save_model(G.eval(), out_folder, dtype=dtype)


def compact_checkpoint(ckpt_path: str | Path, out_dir: str | Path, keep_optimizer: bool = False) -> Path:
    """A smaller, *approximate* resume point: networks in float16, Adam moments in bfloat16 or dropped.

    Why: a full 128 px checkpoint is ~245 MB (G, G_ema, D in fp32 and both Adam states), more than
    one 64 MiB upload to a fresh GPU machine. The compact one without optimizer is ~55 MB (G, D,
    G_ema, ADA p, counters, RNG), with ``keep_optimizer`` ~125 MB. Resuming from it is not
    bit-exact (weights lose fp16 precision; dropped moments restart) and says so when loaded.
    """
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt_path} is not a GAN training checkpoint")

    def cast(sd: dict, dtype: torch.dtype) -> dict:
        return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}

    for name in ("G", "D", "G_ema"):
        ckpt[name] = cast(ckpt[name], torch.float16)
    for name in ("opt_G", "opt_D"):
        if not keep_optimizer:
            ckpt.pop(name, None)
        elif name in ckpt:
            ckpt[name]["state"] = {i: {k: (v.to(torch.bfloat16) if k != "step" and v.is_floating_point() else v)
                                       for k, v in st.items()} for i, st in ckpt[name]["state"].items()}
    ckpt["compact"] = {"weights": "float16", "optimizer": "bfloat16" if keep_optimizer else "dropped",
                       "source": str(ckpt_path)}
    return save_checkpoint(out_dir, int(ckpt["progress"]["step"]), ckpt, keep=None)


# -- evaluation helpers ------------------------------------------------------------------------


@torch.no_grad()
def sample_grid(G: Generator, subs: list[tuple[int, float]], seeds: int, device: torch.device, seed: int = 2024) -> np.ndarray:
    """(rows * R, seeds * R, 3) uint8: one row per sub-generator (full model first), fixed z, const
    noise; lower resolutions are shown nearest-upsampled to R."""
    R = G.cfg.resolution
    z = torch.randn(seeds, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = G.training
    G.eval()
    ws = G.mapping(z)
    rows = []
    for res, ratio in [(R, 1.0)] + [s for s in subs if s != (R, 1.0)]:
        img = G.synthesis(ws, resolution=res, ratio=ratio, noise_mode="const").float()
        img = torch.nn.functional.interpolate(img, size=(R, R), mode="nearest")
        rows.append(torch.cat(list(img), dim=2))  # (3, R, seeds * R)
    G.train(was_training)
    grid = torch.cat(rows, dim=1)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def save_png_atomic(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))


class MetricsLog:
    """Append-only JSON lines (rank 0 only); each line flushed so a killed run keeps its history."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record) -> None:
        if not self.enabled:
            return
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


class FDEvaluator:
    """Quick FD of G_ema (full model and the smallest sub-generator) against cached real statistics."""

    def __init__(self, dataset, run_dir: Path, n: int, device: torch.device, cfg: GANConfig):
        from faceage.eval.fid import FeatureExtractor

        self.extractor = FeatureExtractor(device)
        self.dataset, self.n, self.device, self.cfg = dataset, n, device, cfg
        self.cache = run_dir / "fdstats"
        small = min(cfg.sub_models() or [(cfg.resolution, 1.0)], key=lambda s: (s[0], s[1]))
        self.subs = [(cfg.resolution, 1.0)] + ([small] if small != (cfg.resolution, 1.0) else [])

    def real_stats(self, res: int) -> dict:
        from faceage.eval.fid import cached_stats, stats_of_images
        from faceage.training.dataset import real_batches

        opts = {"data": self.dataset.stats()["identity"], "split": self.dataset.split, "n": self.n,
                "resolution": res, "seed": 123}

        def compute():
            batches = (b.float() / 127.5 - 1 for b in real_batches(self.dataset, self.n, 250))
            return stats_of_images(batches, self.extractor, resolution=res)

        return cached_stats(self.cache, opts, compute)

    @torch.no_grad()
    def __call__(self, G: Generator) -> dict[str, float]:
        from faceage.eval.fid import FeatureStats, fd_between

        out = {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type if devices else "cuda"):
            torch.manual_seed(4242)
            for res, ratio in self.subs:
                stats = FeatureStats()
                done = 0
                while done < self.n:
                    b = min(250, self.n - done)
                    z = torch.randn(b, G.cfg.z_dim, device=self.device)
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=resolve_amp(self.cfg, self.device)):
                        img = G.synthesis(G.mapping(z), resolution=res, ratio=ratio)
                    stats.add(self.extractor(img.float()))
                    done += b
                out[f"fd_r{res}_c{ratio:g}"] = fd_between(stats, self.real_stats(res))
        return out


# -- the loop ----------------------------------------------------------------------------------


class _StopFlag:
    def __init__(self):
        self.stop = False
        self.reason = ""

    def install(self) -> None:
        def handler(signum, _frame):
            self.stop, self.reason = True, f"signal {signum}"

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # not in the main thread
                pass


def _stop_reason(state: TrainState, opts: RunOptions, flag: _StopFlag) -> str:
    if flag.stop:
        return flag.reason
    if state.nimg >= opts.kimg * 1000:
        return f"reached {opts.kimg:g} kimg"
    if opts.max_steps is not None and state.step >= opts.max_steps:
        return f"reached {opts.max_steps} steps"
    if opts.minutes is not None and time.monotonic() - opts.started >= opts.minutes * 60:
        return f"time limit {opts.minutes:g} min"
    return ""


def prepare_resume(resume: str | None, out: Path) -> tuple[str, Path | None]:
    """('fresh'|'checkpoint'|'weights', path) from ``--resume`` (None, 'auto', index, run dir, model dir)."""
    from faceage.training.checkpoint import latest_checkpoint

    if resume is None:
        return "fresh", None
    if resume == "auto":
        found = latest_checkpoint(out)
        return ("checkpoint", found) if found is not None else ("fresh", None)
    p = Path(resume)
    if p.is_file() and p.suffix == ".json":
        return "checkpoint", p
    if p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return "weights", p
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise FileNotFoundError(f"--resume {p}: no complete checkpoint in that folder")
        return "checkpoint", found
    raise FileNotFoundError(f"--resume {p}: not a checkpoint index, run folder or model folder")


def merge_config(saved: dict, explicit: dict) -> tuple[GANConfig, dict]:
    """The checkpoint's config with the explicitly given fields (``augment.X`` for ADA) applied.

    Returns the config and the fields whose value actually changed.
    """
    merged = GANConfig.from_dict(saved).to_dict()
    changed = {}

    def norm(v):
        return list(v) if isinstance(v, tuple) else v

    for key, value in explicit.items():
        target, name = (merged["augment"], key.split(".", 1)[1]) if key.startswith("augment.") else (merged, key)
        if name not in target:
            raise ValueError(f"unknown config field {key!r}")
        if norm(target[name]) != norm(value):
            target[name] = norm(value)
            changed[key] = norm(value)
    return GANConfig.from_dict(merged), changed


def save_run_checkpoint(state: TrainState, opts: RunOptions, data_stats: dict, log: MetricsLog) -> Path | None:
    """Checkpoint + sample grid (rank 0 writes; all ranks take part in gathering RNG states)."""
    sd = training_state_dict(state, data_stats)
    path = None
    if state.dist.is_main:
        t0 = time.monotonic()
        path = save_checkpoint(opts.out, state.step, sd, keep=opts.keep_ckpts)
        grid = sample_grid(state.G_ema, state.cfg.sub_models(), opts.grid_seeds, state.device)
        save_png_atomic(opts.out / f"samples-{state.nimg // 1000:06d}kimg.png", grid)
        log.write(kind="checkpoint", step=state.step, kimg=state.nimg / 1000, path=path.name,
                  seconds=time.monotonic() - t0)
    ddp.barrier()
    return path


def _start(cfg: GANConfig, opts: RunOptions, resume: str | None, explicit: dict) -> tuple[TrainState, dict]:
    """Process group, device, config (from the checkpoint when resuming) and the filled state."""
    world = ddp.env_world_size()
    device = resolve_device(opts.device, int(os.environ.get("LOCAL_RANK", 0)))
    dist = ddp.init_from_env(device.type)
    mode, resume_path = prepare_resume(resume, opts.out)
    ckpt = None
    if mode == "checkpoint":
        ckpt = load_checkpoint(resume_path)
        cfg, changed = merge_config(ckpt["config"], explicit)
        if changed:
            warnings.warn(f"overriding checkpoint settings {changed}: the resume is not exact", stacklevel=3)
        if ckpt.get("world_size", 1) != world:
            warnings.warn(f"checkpoint was written by {ckpt.get('world_size')} processes, now {world}: "
                          "data order and random streams change (not an exact resume)", stacklevel=3)
    setup_backends(cfg, device)
    _seed_everything(cfg.seed, dist.rank)
    state = create_state(cfg, device, dist)
    notes: list[str] = []
    if ckpt is not None:
        notes = load_training_state(state, ckpt)
    elif mode == "weights":
        notes = init_from_weights(state, resume_path)
    for n in notes:
        warnings.warn(n, stacklevel=3)
    for m in (state.G, state.D, state.G_ema):
        ddp.broadcast_module(m)
    return state, {"mode": mode, "path": str(resume_path) if resume_path else None, "notes": notes}


class _Meter:
    """Averages step statistics on the device and writes one metrics line per ``every`` steps."""

    def __init__(self, state: TrainState, opts: RunOptions, log: MetricsLog, echo: Callable[[str], None]):
        self.state, self.opts, self.log, self.echo = state, opts, log, echo
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.t0, self.nimg0 = time.monotonic(), self.state.nimg

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            if k in ("sub_res", "sub_ratio"):
                continue
            self.sums[k] = self.sums.get(k, 0) + v.detach().float()
            self.counts[k] = self.counts.get(k, 0) + 1
        st = self.state
        if st.step % self.opts.log_every or not st.dist.is_main:
            return
        now = time.monotonic()
        rec = {k: float(self.sums[k]) / self.counts[k] for k in self.sums}  # the one host sync
        steps = max(self.counts.get("loss_d", 1), 1)
        kimg_min = (st.nimg - self.nimg0) / 1000 / max(now - self.t0, 1e-9) * 60
        mem = torch.cuda.max_memory_allocated(st.device) / 2**30 if st.device.type == "cuda" else 0.0
        self.log.write(kind="train", step=st.step, kimg=st.nimg / 1000, time_s=now - self.opts.started,
                       kimg_per_min=kimg_min, sec_per_step=(now - self.t0) / steps, ada_p=st.ada.p,
                       ada_rt=st.ada.last_rt, peak_mem_gb=mem, **rec)
        self.echo(f"[train gan] step {st.step} kimg {st.nimg / 1000:.1f} {kimg_min:.1f} kimg/min "
                  f"D {rec.get('loss_d', 0):.3f} G {rec.get('loss_g_full', 0):.3f}/{rec.get('loss_g_sub', 0):.3f} "
                  f"cons {rec.get('cons', 0):.4f} p {st.ada.p:.3f}")
        self._reset()


def _next_multiple(nimg: int, kimg: float) -> float:
    step = int(kimg * 1000)
    return (nimg // step + 1) * step if step > 0 else math.inf


def train(cfg: GANConfig, opts: RunOptions, resume: str | None = None,
          explicit: dict | None = None, echo: Callable[[str], None] = print) -> Path | None:
    """Run (or continue) a training run; returns the last checkpoint's index path (rank 0).

    ``explicit``: config fields the user set on the command line; on resume they override the
    checkpoint's values (with a warning, since the resume is then not exact), all others come
    from the checkpoint. Stops at ``opts.kimg``, ``opts.max_steps``, ``opts.minutes`` or SIGTERM/
    SIGINT, always with a final checkpoint.
    """
    from faceage.training.dataset import ShardImageDataset, make_loader, to_float_images

    opts.out = Path(opts.out)
    state, resumed = _start(cfg, opts, resume, explicit or {})
    cfg, dist, device = state.cfg, state.dist, state.device
    if dist.is_main:
        opts.out.mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    dataset = ShardImageDataset(opts.data, split=opts.split, resolution=cfg.resolution, mirror=cfg.mirror)
    data_stats = dataset.stats()
    log = MetricsLog(opts.out / "metrics.jsonl", dist.is_main)
    if dist.is_main:
        launch = {"config": cfg.to_dict(), "resume": resumed, "start_step": state.step, "start_kimg": state.nimg / 1000,
                  "run": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k != "started"},
                  "world_size": dist.world_size, "torch": torch.__version__, "data": data_stats,
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
        if not (opts.out / "options.json").exists():
            write_json_atomic(opts.out / "options.json", launch, default=str)
        write_json_atomic(opts.out / f"launch-{state.step:09d}.json", launch, default=str)
        echo(f"[train gan] {resumed['mode']} at step {state.step} ({state.nimg / 1000:.1f} kimg); {data_stats['images']} "
             f"faces x{2 if cfg.mirror else 1}; batch {cfg.batch} x {dist.world_size}; device {launch['device']}; "
             f"amp {'bf16' if state.amp_enabled else 'off'}")
    fd_eval = None
    if opts.fd_kimg > 0 and dist.is_main:
        try:
            with torch.random.fork_rng(devices=[]):  # building MobileNetV2 draws init weights
                fd_eval = FDEvaluator(dataset, opts.out, opts.fd_n, device, cfg)
        except Exception as exc:  # noqa: BLE001 - a missing metric net must not stop training
            warnings.warn(f"quick FD disabled: {exc}", stacklevel=2)

    batches = iter(make_loader(dataset, cfg.batch, dist.rank, dist.world_size, cfg.seed, state.step,
                               opts.workers, pin_memory=device.type == "cuda"))
    flag = _StopFlag()
    flag.install()
    meter = _Meter(state, opts, log, echo)
    next_ckpt, next_fd = _next_multiple(state.nimg, opts.ckpt_kimg), _next_multiple(state.nimg, opts.fd_kimg)
    t_ckpt, last_path = time.monotonic(), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    while True:
        reason = _stop_reason(state, opts, flag)
        due = state.nimg >= next_ckpt or time.monotonic() - t_ckpt >= opts.ckpt_minutes * 60
        if dist.enabled:  # rank 0 decides for everyone, in one small broadcast per step
            stop, due = ddp.broadcast_flags([bool(reason), due], device)
            reason = (reason or "stopped by rank 0") if stop else ""
        if reason:
            break
        if due and state.step > 0:
            last_path = save_run_checkpoint(state, opts, data_stats, log) or last_path
            next_ckpt, t_ckpt = _next_multiple(state.nimg, opts.ckpt_kimg), time.monotonic()
        meter.add(train_step(state, to_float_images(next(batches), device)))
        if state.nimg >= next_fd:
            next_fd = _next_multiple(state.nimg, opts.fd_kimg)
            if fd_eval is not None:
                t0 = time.monotonic()
                fds = fd_eval(state.G_ema)
                log.write(kind="fd", step=state.step, kimg=state.nimg / 1000, n=opts.fd_n,
                          seconds=time.monotonic() - t0, **fds)
                echo(f"[train gan] FD @ {state.nimg / 1000:.0f} kimg: " + ", ".join(f"{k} {v:.2f}" for k, v in fds.items()))
            ddp.barrier()
    last_path = save_run_checkpoint(state, opts, data_stats, log) or last_path
    if dist.is_main and opts.compact_to is not None and last_path is not None:
        echo(f"[train gan] compact checkpoint for upload: {compact_checkpoint(last_path, opts.compact_to)}")
    if dist.is_main:
        log.write(kind="stop", step=state.step, kimg=state.nimg / 1000, reason=reason,
                  time_s=time.monotonic() - opts.started)
        echo(f"[train gan] stopped ({reason}) at step {state.step}, {state.nimg / 1000:.1f} kimg; checkpoint {last_path}")
    dataset.close()
    return last_path
