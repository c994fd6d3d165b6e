"""The student network: its sub-networks share weights, change nothing untrained, keep gray gray."""

from __future__ import annotations

import pytest
import torch

from faceage.models.colour import rgb_to_ycc
from faceage.models.io import load_flat, save_flat
from faceage.models.student import Student, StudentConfig, apply_student

TINY = StudentConfig(input_size=32, widths=(4, 8, 8), top_width=4, blocks=1, resolutions=(16, 32, 64), flow_size=16)
AGES = (torch.tensor([20.0, 6.0]), torch.tensor([70.0, 35.0]))


def _wake(net: Student, seed: int = 0) -> Student:
    """Random heads (untrained ones are zero: the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in [*net.heads.values(), net.flow_head]:
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
    return net


def test_every_submodel_has_its_resolution_and_the_untrained_one_changes_nothing():
    net = Student(TINY)
    faces = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for resolution, ratio in TINY.sub_models():
        flow, luma, gain = net(faces, *AGES, resolution, ratio)
        assert flow.shape == (2, 2, 16, 16) and luma.shape == (2, 1, resolution, resolution)
        assert gain.shape == (2, 2, resolution, resolution)
        edited, warped = apply_student(faces, flow, luma, gain, 16)
        assert torch.allclose(edited, warped, atol=1e-5)
        if resolution == 64:
            assert torch.allclose(edited, faces, atol=1e-4)  # zero flow, zero change: the input itself


def test_sub_networks_use_the_leading_channels_of_the_same_weights():
    torch.manual_seed(0)
    net = _wake(Student(TINY))
    faces = torch.rand(2, 3, 32, 32) * 2 - 1
    full = net(faces, *AGES, 32, 1.0)
    half = net(faces, *AGES, 32, 0.5)
    assert not torch.allclose(full[1], half[1])
    with torch.no_grad():  # channels a half-width network does not use do not change its output
        net.stem.weight[-1].add_(5.0)
    assert torch.equal(net(faces, *AGES, 32, 0.5)[1], half[1])
    assert not torch.equal(net(faces, *AGES, 32, 1.0)[1], full[1])


def test_bounds_and_gray_stays_gray():
    torch.manual_seed(1)
    net = _wake(Student(TINY), seed=1)
    gray = (torch.rand(2, 1, 32, 32) * 2 - 1).expand(-1, 3, -1, -1).contiguous()
    flow, luma, gain = net(gray, *AGES, 64, 1.0)
    assert flow.abs().max() <= TINY.max_flow and luma.abs().max() <= TINY.max_luma
    edited, _ = apply_student(gray, flow, luma, gain, 16)
    assert rgb_to_ycc(edited)[:, 1:].abs().max() < 1e-4


def test_bad_arguments_and_configs_are_refused():
    net = Student(TINY)
    with pytest.raises(ValueError, match="resolution"):
        net(torch.zeros(1, 3, 32, 32), torch.tensor([1.0]), torch.tensor([2.0]), 128)
    with pytest.raises(ValueError, match="faces"):
        net(torch.zeros(1, 32, 32), torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="ratios"):
        StudentConfig(ratios=(0.5,))
    with pytest.raises(ValueError, match="resolutions"):
        StudentConfig(resolutions=(100,))


def test_weights_round_trip(tmp_path):
    net = _wake(Student(TINY))
    path = save_flat(net, tmp_path / "student.safetensors")
    back = load_flat(path, Student, "student.safetensors", "student weights")
    assert back.cfg == TINY
    faces = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = net(faces, *AGES, 64, 0.75), back(faces, *AGES, 64, 0.75)
    assert all(torch.allclose(x, y, atol=2e-2) for x, y in zip(a, b))
