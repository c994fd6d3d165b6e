"""IPCGAN networks and the AlexNet identity features: shapes, conditioning, identity at init, weights I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceage.age_groups import GROUPINGS, get_grouping
from faceage.errors import ModelFileError
from faceage.methods.ipcgan import IPCGANMethod, group_weights
from faceage.models.alexnet import load_alexnet
from faceage.models.io import load_flat, save_flat
from faceage.models.ipcgan import (
    IPCGANConfig,
    IPCGANDiscriminator,
    IPCGANGenerator,
    ProjectedDiscriminator,
    build_discriminator,
    condition_maps,
)

TINY = dict(resolution=64, num_groups=8, g_channels=4, g_blocks=1, d_channels=8, d_layers=3)


def test_condition_maps_one_hot_and_weights():
    maps = condition_maps(torch.tensor([2, 0]), 5, 4)
    assert maps.shape == (2, 5, 4, 4)
    assert maps[0, 2].eq(1).all() and maps[0].sum() == 16 and maps[1, 0].eq(1).all()
    mixed = condition_maps(torch.tensor([[0.25, 0.75, 0.0]]), 3, 2)
    assert torch.allclose(mixed[0, :, 0, 0], torch.tensor([0.25, 0.75, 0.0]))
    with pytest.raises(ValueError):
        condition_maps(torch.tensor([5]), 5, 4)
    with pytest.raises(ValueError):
        condition_maps(torch.tensor([[0.5, 0.5]]), 3, 4)


def test_residual_generator_starts_as_identity_and_conditions_matter():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    g = IPCGANGenerator(IPCGANConfig(**TINY))
    assert torch.allclose(g(x, torch.tensor([0, 7])), x)
    direct = IPCGANGenerator(IPCGANConfig(**{**TINY, "residual": False})).eval()
    y0, y7 = direct(x, torch.tensor([0, 0])), direct(x, torch.tensor([7, 7]))
    assert y0.shape == x.shape and y0.abs().max() <= 1
    assert (y0 - y7).abs().mean() > 1e-4  # the condition reaches the output
    with pytest.raises(ValueError):
        g(torch.rand(1, 3, 32, 32), torch.tensor([0]))


def test_discriminator_scores_image_group_pairs():
    d = IPCGANDiscriminator(IPCGANConfig(**TINY)).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    out = d(x, torch.tensor([0, 1, 2]))
    assert out.shape == (3, 1, 8, 8)
    assert not torch.allclose(out, d(x, torch.tensor([5, 6, 7])))


def test_config_rejects_bad_architectures():
    with pytest.raises(ValueError):
        IPCGANConfig(resolution=72)
    with pytest.raises(ValueError):
        IPCGANConfig(num_groups=1)
    with pytest.raises(ValueError):
        IPCGANConfig(resolution=16, d_layers=4)


def test_generator_weights_round_trip_fp16(tmp_path):
    torch.manual_seed(1)
    g = IPCGANGenerator(IPCGANConfig(**{**TINY, "residual": False})).eval()
    path = save_flat(g, tmp_path / "g.safetensors", {"grouping": "lifespan", "steps": 3})
    loaded = load_flat(path, IPCGANGenerator, "unused", "test weights")
    assert loaded.cfg == g.cfg
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.allclose(loaded(x, torch.tensor([3])), g(x, torch.tensor([3])), atol=2e-2)
    (tmp_path / "g.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelFileError):
        load_flat(path, IPCGANGenerator, "unused", "test weights")


def test_groupings_and_condition_weights():
    life = get_grouping("lifespan")
    assert life.num_groups == 8 and life.labels()[0] == "0-9" and life.labels()[-1] == "70+"
    assert life.group_of(np.array([0, 9.9, 10, 45, 69, 70, 100])).tolist() == [0, 0, 1, 4, 6, 7, 7]
    assert get_grouping("ipcgan5").group_of(20).item() == 0 and get_grouping("ipcgan5").group_of(51).item() == 4
    w = group_weights(np.array([0, 5, 60, 100]), life)
    assert np.allclose(w.sum(1), 1) and w[0, 0] == 1 and w[1, 0] == 1 and w[3, 7] == 1
    assert np.allclose(w[2, 5:7], [0.5, 0.5])
    assert set(GROUPINGS) == {"lifespan", "ipcgan5"}
    with pytest.raises(ValueError):
        get_grouping("decades")
    with pytest.raises(ValueError):
        life.group_of(np.nan)


def test_method_reconstructs_with_the_source_group_and_checks_inputs():
    torch.manual_seed(2)
    g = IPCGANGenerator(IPCGANConfig(**{**TINY, "residual": False}))
    method = IPCGANMethod(g, get_grouping("lifespan"))
    faces = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    edit = method.edit(faces, np.array([25.0, 40.0, 70.0]), 25.0)
    assert edit.edited.shape == faces.shape and edit.edited.dtype == np.uint8
    # target == source group: the edit equals the reconstruction for the first face
    assert np.array_equal(edit.edited[0], edit.reconstructed[0])
    assert not np.array_equal(edit.edited[2], edit.reconstructed[2])
    again = method.edit(faces, np.array([25.0, 40.0, 70.0]), 25.0)
    assert np.array_equal(again.edited, edit.edited)  # deterministic (eval-mode BatchNorm)
    with pytest.raises(ValueError):
        method.edit(faces[:, :32], np.array([1.0, 2.0, 3.0]), 30)
    with pytest.raises(ValueError):
        method.edit(faces, np.array([1.0]), 30)
    with pytest.raises(ValueError):
        IPCGANMethod(g, get_grouping("ipcgan5"))


def test_alexnet_conv5_separates_people_more_than_small_changes(shared_datasets):
    from PIL import Image

    files = sorted((shared_datasets / "utkface" / "images").glob("*.jpg"))[:800:100]
    x = (
        torch.stack(
            [torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((96, 96)))).permute(2, 0, 1) for f in files]
        ).float()
        / 127.5
        - 1
    )

    net = load_alexnet()
    assert not any(p.requires_grad for p in net.parameters())

    def conv5(z):
        f = net(z).relu5
        return f / f.pow(2).sum(1, keepdim=True).sqrt()

    with torch.no_grad():
        base = conv5(x)
        same = (conv5((x + 0.05).clamp(-1, 1)) - base).pow(2).sum(1).mean()
        blurred = (conv5(F.avg_pool2d(x, 3, 1, 1)) - base).pow(2).sum(1).mean()
        other = (conv5(x.roll(1, 0)) - base).pow(2).sum(1).mean()
    assert base.shape[1] == 256
    assert other > 20 * same and other > 2 * blurred


def test_luma_head_starts_as_identity_and_cannot_colour_a_gray_face():
    torch.manual_seed(0)
    g = IPCGANGenerator(IPCGANConfig(**TINY, head="luma")).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(g(x, torch.tensor([0, 7])), x, atol=1e-5)
    torch.nn.init.normal_(g.to_rgb.weight, std=0.5)  # a trained (here: random) head
    gray = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    y = g(gray, torch.tensor([0, 7]))
    assert (y - gray).abs().mean() > 0.01 and (y.amax(1) - y.amin(1)).max() < 1e-5
    with pytest.raises(ValueError, match="residual"):
        IPCGANConfig(**TINY, head="luma", residual=False)
    with pytest.raises(ValueError, match="head"):
        IPCGANConfig(**TINY, head="hsv")


def test_projected_discriminator_trains_only_its_heads_and_scores_pairs():
    torch.manual_seed(0)
    d = ProjectedDiscriminator(IPCGANConfig(**TINY, d_type="projected"))
    d.train()
    assert not d.backbone.training  # frozen BatchNorm statistics
    trainable = {id(p) for p in d.trainable_parameters()}
    assert trainable and all(not p.requires_grad for p in d.backbone.parameters())
    assert all(id(p) not in trainable for m in (d.backbone, d.ccm) for p in m.parameters())
    x = (torch.rand(3, 3, 64, 64) * 2 - 1).requires_grad_(True)
    out = d(x, torch.tensor([0, 1, 2]))
    assert [o.shape[-1] for o in out] == [8, 4, 2] and all(o.shape[:2] == (3, 1) for o in out)
    assert not torch.allclose(out[0], d(x, torch.tensor([5, 6, 7]))[0])
    sum(o.sum() for o in out).backward()  # G learns through the frozen features
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert isinstance(build_discriminator(IPCGANConfig(**TINY)), IPCGANDiscriminator)


def test_method_keeps_colour_smooth_whatever_the_generator():
    torch.manual_seed(0)
    g = IPCGANGenerator(IPCGANConfig(**TINY))  # a free RGB head, made to paint noise
    torch.nn.init.normal_(g.to_rgb.weight, std=0.5)
    faces = np.repeat(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 1), dtype=np.uint8), 3, -1)
    free = IPCGANMethod(g, get_grouping("lifespan"), colour="free").edit(faces, np.array([20.0, 60.0]), 70)
    smooth = IPCGANMethod(g, get_grouping("lifespan")).edit(faces, np.array([20.0, 60.0]), 70)
    spread = lambda a: int((a.max(-1).astype(int) - a.min(-1)).max())  # noqa: E731
    assert spread(free.edited) > 20
    assert spread(smooth.edited) <= 1 and spread(smooth.reconstructed) <= 1
    with pytest.raises(ValueError, match="colour"):
        IPCGANMethod(g, get_grouping("lifespan"), colour="vivid")
