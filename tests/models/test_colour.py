"""faceage.models.colour: luma edits at full resolution, colour only as a smooth gain on the input's own."""

from __future__ import annotations

import torch

from faceage.models.colour import (
    MAX_CHROMA_GAIN,
    gain_from_logits,
    keep_colour,
    lowpass,
    luma_chroma_edit,
    rgb_to_ycc,
    ycc_to_rgb,
    ycc_to_rgb_in_gamut,
)


def _smooth_face(seed: int = 0, size: int = 64) -> torch.Tensor:
    """A smooth coloured image with some fine luma texture, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = lowpass(torch.rand(2, 3, size, size, generator=g) * 1.2 - 0.6, 16)
    texture = 0.1 * (torch.rand(2, 1, size, size, generator=g) - 0.5)
    return (base + texture).clamp(-1, 1)


def _highfreq_chroma(x: torch.Tensor) -> float:
    c = rgb_to_ycc(x)[:, 1:]
    return float((c - lowpass(c, 4)).pow(2).mean())


def test_ycc_round_trip_and_gray_has_no_chroma():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.allclose(ycc_to_rgb(rgb_to_ycc(x)), x, atol=1e-5)
    gray = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8) * 2 - 1
    assert rgb_to_ycc(gray)[:, 1:].abs().max() < 1e-5


def test_gain_is_one_at_zero_and_bounded():
    assert torch.allclose(gain_from_logits(torch.zeros(3)), torch.ones(3))
    big = gain_from_logits(torch.tensor([-50.0, 50.0]))
    assert big[0] >= 0 and big[1] <= MAX_CHROMA_GAIN + 1e-6


def test_luma_chroma_edit_is_identity_at_zero_and_cannot_colour_gray():
    x = _smooth_face()
    zero = torch.zeros(2, 1, 64, 64)
    assert torch.allclose(luma_chroma_edit(x, zero, torch.zeros(2, 2, 64, 64), 16), x, atol=1e-5)
    gray = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    noisy = luma_chroma_edit(gray, torch.randn(2, 1, 64, 64) * 0.3, torch.randn(2, 2, 64, 64) * 5, 16)
    assert (noisy.amax(1) - noisy.amin(1)).max() < 1e-5  # still gray
    assert (noisy - gray).abs().mean() > 0.05  # but the luma did change


def test_keep_colour_drops_invented_colour_noise_and_keeps_luma():
    x = _smooth_face(1)
    streaks = torch.zeros_like(x)
    streaks[:, 0, :, ::2], streaks[:, 2, :, 1::2] = 0.3, 0.3  # rainbow stripes
    y = (x + streaks - streaks.mean(1, keepdim=True)).clamp(-1, 1)
    assert _highfreq_chroma(y) > 20 * _highfreq_chroma(x)
    kept = keep_colour(x, y)
    assert _highfreq_chroma(kept) < 2 * _highfreq_chroma(x)
    inside = (y.abs() < 0.8).all(1)  # away from the gamut limits the luma is the output's own
    assert torch.allclose(rgb_to_ycc(kept)[:, 0][inside], rgb_to_ycc(y)[:, 0][inside], atol=1e-4)
    # a smoothly desaturated output is reproduced
    ycc = rgb_to_ycc(x)
    paler = ycc_to_rgb(torch.cat([ycc[:, :1], 0.5 * ycc[:, 1:]], 1))
    assert (keep_colour(x, paler) - paler).abs().mean() < 0.01


def test_in_gamut_keeps_the_chroma_when_the_luma_overflows():
    chroma = torch.tensor([0.1, -0.05]).view(1, 2, 1, 1)
    rgb = ycc_to_rgb_in_gamut(torch.full((1, 1, 1, 1), 1.5), chroma)
    assert rgb.max() <= 1 and torch.allclose(rgb_to_ycc(rgb)[:, 1:], chroma, atol=1e-5)
