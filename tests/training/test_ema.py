from __future__ import annotations

import pytest
import torch
from torch import nn

from faceage.training.ema import ema_beta, make_ema, update_ema

pytestmark = pytest.mark.usefixtures("one_thread")


def test_beta_half_life_and_rampup():
    # Without ramp-up, one half-life worth of images halves the weight of the old average.
    assert ema_beta(10_000, 10**9, half_life_kimg=10, rampup=None) == pytest.approx(0.5)
    # Early on the ramp-up shortens the half-life to rampup * images seen.
    assert ema_beta(64, 64_000, half_life_kimg=10, rampup=0.05) == pytest.approx(0.5 ** (64 / 3200))
    assert ema_beta(64, 0, half_life_kimg=10, rampup=0.05) == 0.0


def test_update_ema_lerps_params_and_copies_buffers():
    model = nn.BatchNorm1d(3)
    ema = make_ema(model)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    update_ema(ema, model, beta=0.25)
    # ema = param + beta * (ema - param) = 3 + 0.25 * (1 - 3)
    assert torch.allclose(ema.weight, torch.full((3,), 2.5))
    assert torch.equal(ema.running_mean, model.running_mean)
