"""Building blocks against their definitions; compile and bf16 autocast smoke tests on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceage.models.layers import (
    EqualConv2d,
    EqualLinear,
    SkipUpsample,
    channels_for_ratio,
    fir_downsample,
    make_blur_kernel,
    upfirdn2d,
)
from faceage.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

TINY_G = GeneratorConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
TINY_D = DiscriminatorConfig(resolution=16, channel_base=128, channel_max=16)


def test_channels_for_ratio():
    assert channels_for_ratio(256, 0.25) == 64
    assert channels_for_ratio(10, 0.7) == 7  # 0.7 * 10 = 7.000000000000001 must not round up
    assert channels_for_ratio(3, 0.5) == 2
    assert channels_for_ratio(5, 0.01) == 1
    with pytest.raises(ValueError, match=r"channel ratio must be in \(0, 1\], got 1.5"):
        channels_for_ratio(5, 1.5)


def test_blur_kernel_is_normalised_outer_product():
    k = make_blur_kernel((1, 3, 3, 1))
    assert k.shape == (4, 4) and math.isclose(float(k.sum()), 1.0, rel_tol=1e-6)
    assert float(k[1, 2]) == pytest.approx(9 / 64)


def test_skip_upsample_matches_zero_insertion_definition():
    """upfirdn2d(up=2, pad=(2,1)): insert zeros after each sample, pad 2 before / 1 after, convolve."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5)
    up = torch.zeros(2, 3, 10, 10)
    up[:, :, ::2, ::2] = x
    padded = F.pad(up, (2, 1, 2, 1))
    k = make_blur_kernel((1, 3, 3, 1)) * 4
    expected = torch.zeros(2, 3, 10, 10)
    for ky in range(4):
        for kx in range(4):
            expected += k[3 - ky, 3 - kx] * padded[:, :, ky : ky + 10, kx : kx + 10]
    torch.testing.assert_close(SkipUpsample()(x), expected, rtol=1e-5, atol=1e-5)
    # a constant image stays constant away from the border (gain 4 compensates the zeros)
    ones = SkipUpsample()(torch.ones(1, 1, 6, 6))
    torch.testing.assert_close(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))


def test_downsampling_conv_matches_blur_then_strided_conv():
    torch.manual_seed(0)
    conv = EqualConv2d(4, 6, 3, activate=False, downsample=True)
    x = torch.randn(2, 4, 8, 8)
    blurred = upfirdn2d(x, make_blur_kernel((1, 3, 3, 1)), pad=(2, 2))
    expected = F.conv2d(blurred, conv.weight / math.sqrt(4 * 9), stride=2) + conv.bias.view(1, -1, 1, 1)
    out = conv(x)
    assert out.shape == (2, 6, 4, 4)
    torch.testing.assert_close(out, expected)


def test_equal_linear_scales_and_slices():
    torch.manual_seed(0)
    lin = EqualLinear(6, 5, bias_init=0.5, lr_mul=0.1)
    x = torch.randn(3, 6)
    expected = x @ (lin.weight * 0.1 / math.sqrt(6)).t() + lin.bias * 0.1
    torch.testing.assert_close(lin(x), expected)
    torch.testing.assert_close(lin(x, 2), expected[:, :2])


def test_compiles_without_graph_breaks():
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    d = Discriminator(TINY_D)
    gc = torch.compile(g, fullgraph=True, backend="eager")
    dc = torch.compile(d, fullgraph=True, backend="eager")
    z = torch.randn(2, TINY_G.z_dim)
    with torch.no_grad():
        img = gc(z, resolution=16, ratio=0.5, noise_mode="const")
        torch.testing.assert_close(img, g(z, resolution=16, ratio=0.5, noise_mode="const"))
        assert dc(img).shape == (2, 1)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    d = Discriminator(TINY_D)
    z = torch.randn(3, TINY_G.z_dim)
    with torch.no_grad():
        ref = g(z, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = g(z, noise_mode="const")
            logits = d(img)
    assert img.dtype == torch.bfloat16 and logits.shape == (3, 1) and torch.isfinite(logits.float()).all()
    assert (img.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_fir_downsample_shapes_constants_and_errors():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 32, 32)
    assert fir_downsample(img, 32) is img
    small = fir_downsample(img, 8)
    assert small.shape == (2, 3, 8, 8)
    ones = fir_downsample(torch.ones(1, 3, 32, 32), 8)
    torch.testing.assert_close(ones[..., 1:-1, 1:-1], torch.ones(1, 3, 6, 6))  # DC gain 1 inside
    # one step equals blur (pad 1 each side) then taking every other pixel
    k = make_blur_kernel((1, 3, 3, 1))
    step = F.conv2d(F.pad(img, (1, 1, 1, 1)), k.flip([0, 1])[None, None].expand(3, 1, 4, 4), groups=3)[..., ::2, ::2]
    torch.testing.assert_close(fir_downsample(img, 16), step)
    with pytest.raises(ValueError, match="power-of-2"):
        fir_downsample(img, 12)
