"""The refiner network: identity at start, bounded luma change, colour only as a gain, strict I/O."""

from __future__ import annotations

import pytest
import torch

from faceage.models.colour import rgb_to_ycc
from faceage.models.io import load_flat, save_flat
from faceage.models.refiner import Refiner, RefinerConfig

SMALL = RefinerConfig(resolution=32, channels=4, levels=2, blocks=1)
AGES = (torch.tensor([20.0, 8.0]), torch.tensor([70.0, 40.0]))


def _random_head(net: Refiner, seed: int = 0) -> Refiner:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * 0.5)
    return net


def test_untrained_refiner_returns_its_input():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = Refiner(SMALL)(x, x, *AGES)
    assert out.shape == x.shape and torch.allclose(out, x, atol=1e-5)


def test_change_is_bounded_and_gray_stays_gray():
    torch.manual_seed(0)
    net = _random_head(Refiner(SMALL))
    gray = (torch.rand(2, 1, 32, 32) * 2 - 1).expand(-1, 3, -1, -1).contiguous()
    luma, _ = net.residual(gray, gray, *AGES)
    assert luma.abs().max() <= SMALL.max_luma + 1e-6 and luma.abs().mean() > 1e-3
    out = net(gray, gray, *AGES)
    assert rgb_to_ycc(out)[:, 1:].abs().max() < 1e-4  # no colour appears
    assert out.min() >= -1 and out.max() <= 1


def test_ages_change_the_result():
    torch.manual_seed(0)
    net = _random_head(Refiner(SMALL))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = net(x, x, *AGES)
    b = net(x, x, AGES[1], AGES[0])
    assert not torch.allclose(a, b)


def test_bad_shapes_and_configs_are_refused():
    net = Refiner(SMALL)
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="aged"):
        net(torch.zeros(1, 3, 16, 16), x, torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="differ"):
        net(x, torch.zeros(2, 3, 32, 32), torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="divisible"):
        RefinerConfig(resolution=36, levels=3)
    with pytest.raises(ValueError, match="max_luma"):
        RefinerConfig(max_luma=0)


def test_weights_round_trip_in_fp16(tmp_path):
    torch.manual_seed(1)
    net = _random_head(Refiner(SMALL))
    path = save_flat(net, tmp_path / "refiner.safetensors", {"steps": 3})
    back = load_flat(path, Refiner, "refiner.safetensors", "refiner weights")
    assert back.cfg == SMALL
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(back(x, x, *AGES), net(x, x, *AGES), atol=2e-2)
