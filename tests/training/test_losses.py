from __future__ import annotations

import math

import pytest
import torch

from faceage.models.stylegan2 import Generator, GeneratorConfig
from faceage.training.losses import (
    box_downsample,
    consistency_loss,
    d_logistic_loss,
    g_nonsaturating_loss,
    path_length_penalty,
    r1_penalty,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_G = GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512, channel_max=32)


def test_logistic_losses_values():
    zero = torch.zeros(5, 1)
    assert d_logistic_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert g_nonsaturating_loss(zero).item() == pytest.approx(math.log(2))
    # A confident, correct D has a small loss; G's loss is large when D rejects its fakes.
    assert d_logistic_loss(torch.full((5, 1), 10.0), torch.full((5, 1), -10.0)).item() < 1e-3
    assert g_nonsaturating_loss(torch.full((5, 1), -10.0)).item() == pytest.approx(10.0, abs=1e-3)


def test_r1_matches_analytic_gradient_of_linear_critic():
    w = torch.randn(3 * 4 * 4)
    x = torch.randn(6, 3, 4, 4, requires_grad=True)
    logits = (x.flatten(1) @ w).unsqueeze(1)
    assert r1_penalty(logits, x).item() == pytest.approx(w.square().sum().item(), rel=1e-5)


def test_box_downsample_is_block_mean():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = box_downsample(x, 2)
    assert y.shape == (2, 3, 2, 2)
    assert torch.allclose(y[1, 2, 1, 0], x[1, 2, 4:8, 0:4].mean())
    assert box_downsample(x, 8) is x
    with pytest.raises(ValueError, match="cannot box-downsample 8 px images to a larger size 16"):
        box_downsample(x, 16)


def test_consistency_zero_when_sub_equals_full():
    torch.manual_seed(0)
    G = Generator(TINY_G).eval()
    ws = G.mapping(torch.randn(3, 16))
    full = G.synthesis(ws, noise_mode="const")
    same = G.synthesis(ws, resolution=32, ratio=1.0, noise_mode="const")
    assert consistency_loss(same, full).item() == 0.0
    # A sub-generator equal to the downsampled full output also scores zero.
    assert consistency_loss(box_downsample(full, 8), full).item() == 0.0
    # A real sub-generator differs, and the gradient reaches only the sub output.
    sub = G.synthesis(ws, resolution=16, ratio=0.5, noise_mode="const")
    full = full.detach().requires_grad_(True)
    loss = consistency_loss(sub, full)
    assert loss.item() > 0
    loss.backward()
    assert full.grad is None


def test_path_length_penalty_runs_and_updates_mean():
    torch.manual_seed(0)
    G = Generator(TINY_G)
    ws = G.mapping(torch.randn(2, 16)).unsqueeze(1).repeat(1, G.num_ws, 1).detach().requires_grad_(True)
    img = G.synthesis(ws)
    pen, mean, lengths = path_length_penalty(img, ws, torch.zeros(()))
    assert torch.isfinite(pen) and mean.item() > 0 and lengths.shape == (2,)
    pen.backward()
    assert any(p.grad is not None for p in G.parameters())
