"""Generator and discriminator on tiny configs: shapes per (resolution, ratio), weight sharing, determinism, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from faceage.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

TINY_G = GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512, channel_max=32)
TINY_D = DiscriminatorConfig(resolution=32, channel_base=512, channel_max=32)
RESOLUTIONS = (8, 16, 32)


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    return Generator(TINY_G).eval()


@pytest.fixture(scope="module")
def disc() -> Discriminator:
    torch.manual_seed(1)
    return Discriminator(TINY_D)


def test_config_channels_and_num_ws():
    assert [TINY_G.channels(r) for r in (4, 8, 16, 32)] == [32, 32, 32, 16]
    assert TINY_G.resolutions == (8, 16, 32)
    assert Generator.num_ws_for(32) == 8 and Generator.num_ws_for(1024) == 18 and Generator.num_ws_for(128) == 12
    with pytest.raises(ValueError, match="power of 2"):
        GeneratorConfig(resolution=48)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("ratio", Generator.RATIOS)
def test_output_shape_for_every_sub_generator(gen, resolution, ratio):
    z = torch.randn(3, TINY_G.z_dim)
    with torch.no_grad():
        img = gen(z, resolution=resolution, ratio=ratio)
    assert img.shape == (3, 3, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()


def test_sliced_channels_are_ceil_of_ratio(gen):
    assert gen.layer_channels(32, 0.25) == {4: 8, 8: 8, 16: 8, 32: 4}
    assert gen.layer_channels(16, 0.75) == {4: 24, 8: 24, 16: 24}
    assert gen.layer_channels(8, 0.01) == {4: 1, 8: 1}  # at least one channel


def test_bad_resolution_or_ratio_raise(gen):
    ws = torch.randn(1, TINY_G.w_dim)
    with pytest.raises(ValueError, match="resolution"):
        gen.synthesis(ws, resolution=64)
    with pytest.raises(ValueError, match="ratio"):
        gen.synthesis(ws, ratio=0.0)
    with pytest.raises(ValueError, match="noise_mode"):
        gen.synthesis(ws, noise_mode="fixed")


def test_full_ratio_full_resolution_equals_forward(gen):
    z = torch.randn(2, TINY_G.z_dim)
    with torch.no_grad():
        a = gen(z, noise_mode="const")
        b = gen(z, resolution=32, ratio=1.0, noise_mode="const")
        c = gen.synthesis(gen.mapping(z), noise_mode="const")
        d = gen.sub_generator(32, 1.0)(gen.mapping(z).unsqueeze(1).repeat(1, gen.num_ws, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    torch.testing.assert_close(a, d, rtol=1e-5, atol=1e-5)


def test_const_noise_is_deterministic_and_random_noise_is_not(gen):
    # Noise strengths start at 0; give them a value so the noise actually matters.
    g = Generator(TINY_G).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    torch.manual_seed(123)
    z = torch.randn(2, TINY_G.z_dim)
    with torch.no_grad():
        a = g(z, noise_mode="const")
        b = g(z, noise_mode="const")
        torch.manual_seed(7)
        r1 = g(z, noise_mode="random")
        torch.manual_seed(7)
        r2 = g(z, noise_mode="random")
        r3 = g(z, noise_mode="random")
        n = g(z, noise_mode="none")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    assert not torch.equal(r1, r3) and not torch.equal(a, n)


def test_fused_and_batched_modconv_agree():
    torch.manual_seed(0)
    g_fused = Generator(GeneratorConfig(**{**TINY_G.to_dict(), "fused_modconv": True})).eval()
    g_batch = Generator(GeneratorConfig(**{**TINY_G.to_dict(), "fused_modconv": False})).eval()
    g_batch.load_state_dict(g_fused.state_dict())
    ws = torch.randn(3, g_fused.num_ws, TINY_G.w_dim)
    with torch.no_grad():
        for res, ratio in ((32, 1.0), (16, 0.5)):
            a = g_fused.synthesis(ws, res, ratio, noise_mode="const")
            b = g_batch.synthesis(ws, res, ratio, noise_mode="const")
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_batch_one_equals_row_of_a_batch(gen):
    # Batch 1 takes the fused path by default, larger batches the batched one: same function.
    ws = torch.randn(3, gen.num_ws, TINY_G.w_dim)
    with torch.no_grad():
        full = gen.synthesis(ws, noise_mode="const")
        one = gen.synthesis(ws[1:2], noise_mode="const")
    torch.testing.assert_close(full[1:2], one, rtol=1e-4, atol=1e-4)


def test_sub_generator_shares_parameters():
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    sub = g.sub_generator(16, 0.5)
    assert all(a is b for a, b in zip(sub.parameters(), g.parameters()))
    assert sub.num_ws == 6
    assert sub.num_parameters() < g.count_parameters(include_mapping=False)
    assert g.count_parameters() == sum(p.numel() for p in g.parameters())
    assert g.count_parameters(8, 0.25) < g.count_parameters(8, 0.5) < g.count_parameters(16, 0.5)
    ws = torch.randn(2, sub.num_ws, TINY_G.w_dim)
    with torch.no_grad():
        before = sub(ws)
        g.blocks["b16"].conv1.conv.weight[0, 0] += 1.0  # a channel the sub-generator reads
        after = sub(ws)
        assert not torch.allclose(before, after)
        g.blocks["b16"].conv1.conv.weight[-1, -1] += 1.0  # channel 31 of 32: outside the 0.5 slice
        again = sub(ws)
    torch.testing.assert_close(after, again, rtol=0, atol=0)


def test_return_all_gives_every_sub_resolution_of_one_pass(gen):
    ws = torch.randn(2, gen.num_ws, TINY_G.w_dim)
    with torch.no_grad():
        outs = gen.synthesis(ws, ratio=0.5, noise_mode="const", return_all=True)
        assert sorted(outs) == [8, 16, 32]
        for res in (8, 16):
            early = gen.synthesis(ws[:, : gen.num_ws_for(res)], resolution=res, ratio=0.5, noise_mode="const")
            torch.testing.assert_close(outs[res], early, rtol=0, atol=0)


def test_gradient_reaches_every_parameter_the_sub_generator_reads():
    torch.manual_seed(0)
    g = Generator(TINY_G).train()
    z = torch.randn(2, TINY_G.z_dim)
    g(z, resolution=16, ratio=0.5).square().mean().backward()
    for name, p in g.named_parameters():
        used = "b32" not in name
        if not used:
            assert p.grad is None, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.endswith("noise_strength"):
            continue  # zero-initialised, but its gradient (noise . upstream grad) is generally non-zero
        grad_used = p.grad
        if name.startswith("blocks.") and p.ndim == 4 and "const" not in name:
            grad_used = p.grad[: math.ceil(0.5 * p.shape[0]), : math.ceil(0.5 * p.shape[1])]
            if "torgb" not in name:
                assert p.grad[math.ceil(0.5 * p.shape[0]) :].abs().sum() == 0, name  # unread rows stay 0
        assert grad_used.abs().sum() > 0, name


def test_mapping_truncation_and_w_avg():
    torch.manual_seed(0)
    g = Generator(TINY_G)
    z = torch.randn(4, TINY_G.z_dim)
    g.train()
    w = g.mapping(z)
    assert w.shape == (4, TINY_G.w_dim)
    expected = (1 - TINY_G.w_avg_beta) * w.detach().mean(0)
    torch.testing.assert_close(g.w_avg, expected)
    g.mapping(z, update_avg=False)
    torch.testing.assert_close(g.w_avg, expected)
    g.eval()
    with torch.no_grad():
        w_avg = g.w_avg.clone()
        w0 = g.mapping(z, truncation=0.0)
        torch.testing.assert_close(w0, w_avg.expand_as(w0))
        torch.testing.assert_close(g.w_avg, w_avg)  # eval mode does not update
        ws = g.mapping(z, truncation=0.5, truncation_cutoff=3)
        plain = g.mapping(z)
    assert ws.shape == (4, g.num_ws, TINY_G.w_dim)
    torch.testing.assert_close(ws[:, 3], plain)
    torch.testing.assert_close(ws[:, 0], w_avg + 0.5 * (plain - w_avg))


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_discriminator_accepts_every_resolution(disc, resolution):
    out = disc(torch.randn(4, 3, resolution, resolution))
    assert out.shape == (4, 1) and torch.isfinite(out).all()


def test_discriminator_rejects_unknown_sizes(disc):
    with pytest.raises(ValueError, match="size"):
        disc(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="label"):
        disc(torch.randn(2, 3, 8, 8), torch.zeros(2, 3))


@pytest.mark.parametrize("batch", [1, 3, 5, 6, 7])
def test_minibatch_std_handles_batches_not_divisible_by_the_group(disc, batch):
    out = disc(torch.randn(batch, 3, 16, 16))
    assert out.shape == (batch, 1) and torch.isfinite(out).all()


def test_minibatch_std_makes_samples_interact(disc):
    x = torch.randn(4, 3, 8, 8)
    a = disc(x)[0]
    x2 = x.clone()
    x2[1] *= 3.0  # same group as sample 0 (stride grouping with group 4 -> one group)
    assert not torch.allclose(a, disc(x2)[0])


def test_conditional_discriminator_projects_the_label():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(resolution=16, channel_base=256, channel_max=16, c_dim=5))
    x = torch.randn(2, 3, 16, 16)
    c0 = torch.nn.functional.one_hot(torch.tensor([0, 1]), 5).float()
    c1 = torch.nn.functional.one_hot(torch.tensor([3, 4]), 5).float()
    a, b = d(x, c0), d(x, c1)
    assert a.shape == (2, 1) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="label"):
        d(x)


def test_discriminator_gradient_flows_to_the_input(disc):
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    disc(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
