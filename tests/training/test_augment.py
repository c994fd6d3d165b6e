from __future__ import annotations

import pytest
import torch

from faceage.training.augment import OPS, AdaptiveAugment, AugmentConfig, augment

pytestmark = pytest.mark.usefixtures("one_thread")


def test_p_zero_is_identity_and_draws_nothing():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    state = torch.get_rng_state()
    assert augment(x, 0.0, AugmentConfig()) is x
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_images_and_is_differentiable(op):
    torch.manual_seed(0)
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = augment(x, 1.0, AugmentConfig(ops=(op,)))
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translate_is_an_integer_shift():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 16, 16)
    y = augment(x, 1.0, AugmentConfig(ops=("translate",)))
    # Interior pixels are a shifted copy of the input: some integer shift matches exactly.
    found = any(
        torch.equal(y[..., 4:12, 4:12], x[..., 4 - dy : 12 - dy, 4 - dx : 12 - dx])
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    )
    assert found


def test_unknown_op_rejected():
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentConfig(ops=("rotate45",))


def test_ada_p_rises_when_d_overfits_and_falls_otherwise():
    cfg = AugmentConfig(target=0.6, speed_kimg=1.0)
    ada = AdaptiveAugment(cfg)
    # D overfits: confidently positive on every real image -> r_t = 1 > 0.6 -> p goes up.
    for _ in range(4):
        ada.accumulate(torch.full((16, 1), 3.0))
    assert ada.update(images_seen=100) == pytest.approx(0.1)
    assert ada.last_rt == pytest.approx(1.0)
    ada.accumulate(torch.full((16, 1), 2.0))
    assert ada.update(images_seen=100) == pytest.approx(0.2)
    # D unsure on reals (half wrong): r_t = 0 < 0.6 -> p goes down, never below 0.
    ada.accumulate(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert ada.update(images_seen=100) == pytest.approx(0.1)
    ada.accumulate(torch.full((4, 1), -1.0))
    assert ada.update(images_seen=1000) == 0.0
    # Nothing accumulated: p unchanged.
    assert ada.update(images_seen=1000) == 0.0


def test_ada_state_round_trip():
    ada = AdaptiveAugment(AugmentConfig())
    ada.p = 0.37
    ada.accumulate(torch.tensor([1.0, 1.0, -1.0]))
    other = AdaptiveAugment(AugmentConfig())
    other.load_state_dict(ada.state_dict())
    assert other.p == 0.37 and other.acc.tolist() == [1.0, 3.0]
