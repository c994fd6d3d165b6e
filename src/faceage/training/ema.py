"""Exponential moving average of the generator's weights, with a half-life in images (StyleGAN2-ADA).

After each G step: ``ema <- lerp(param, ema, beta)`` with ``beta = 0.5 ** (batch / half_life_img)``,
so the average forgets half of its history every ``half_life_kimg`` thousand images whatever the
batch size. With ramp-up, the half-life is at most ``rampup * images_seen_so_far``, so early in
training (or after a fresh start) the average follows the fast-changing weights closely instead
of being dominated by the random initialisation.

Buffers (``w_avg``, constant noise) are copied, not averaged.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def ema_beta(batch_images: int, images_seen: int, half_life_kimg: float, rampup: float | None) -> float:
    """Decay for one update of ``batch_images`` images after ``images_seen`` images in total."""
    half_life = half_life_kimg * 1000.0
    if rampup is not None and rampup > 0:
        half_life = min(half_life, images_seen * rampup)
    if half_life <= 0:
        return 0.0
    return 0.5 ** (batch_images / half_life)


def make_ema(model: M) -> M:
    """A frozen, eval-mode deep copy of ``model`` to hold the running average."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """In place: ema_param = param + beta * (ema_param - param); buffers are copied from ``model``."""
    ema_params: list[torch.Tensor] = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    if len(ema_params) != len(params):
        raise ValueError("EMA and model have different parameter lists")
    if ema_params:
        # lerp(ema, param, 1 - beta) == param + beta * (ema - param)
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
