"""One GAN training iteration: StyleGAN2 with sampled sub-generators and a consistency loss, after
*A StyleGAN-based face age editing method for mobile terminals* (training steps S27-S29).

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
   noise (RNG forked), non-saturating adversarial loss on both, plus the consistency
   loss ``cons_weight * MSE(G_{r,c}(w), box_down_r(G(w)))`` with G(w) detached (S29).
4. EMA of G (half-life in kimg, ramp-up), ADA p update every ``augment.interval`` steps.

Mixed precision: forward passes under bf16 autocast on CUDA; losses, R1 and optimizer in fp32.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from faceage.models.stylegan2 import Generator
from faceage.training import distributed as ddp
from faceage.training.ema import ema_beta, update_ema
from faceage.training.gan.config import GANConfig
from faceage.training.gan.state import TrainState
from faceage.training.losses import (
    box_downsample,
    consistency_loss,
    d_logistic_loss,
    g_nonsaturating_loss,
    path_length_penalty,
    r1_penalty,
)


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
    if sub is not None and sub_img is not None:
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
    assert penalty_full is not None  # terms always holds the full resolution
    state.opt_D.zero_grad(set_to_none=True)
    loss.backward()
    _opt_step(state.opt_D, D)
    return {"r1": penalty_full}


def g_main_step(state: TrainState, sub: tuple[int, float] | None) -> dict[str, torch.Tensor]:
    """Non-saturating loss on the full model and the sub-generator + the consistency loss."""
    G, D, cfg = state.G, state.D, state.cfg
    G.requires_grad_(True)
    D.requires_grad_(False)
    with _autocast(state):
        ws = sample_ws(G, cfg.batch, cfg.style_mixing, state.device)
        full, sub_img = generate_pair(state, ws, sub)
        adv_full = g_nonsaturating_loss(state.D_run(_cl(state, state.ada(full.float()))))
        adv_sub = (
            g_nonsaturating_loss(state.D_run(_cl(state, state.ada(sub_img.float()))))
            if sub_img is not None
            else torch.zeros((), device=state.device)
        )
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
        raise ValueError(
            f"expected reals ({cfg.batch}, 3, {cfg.resolution}, {cfg.resolution}), got {tuple(reals.shape)}"
        )
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
