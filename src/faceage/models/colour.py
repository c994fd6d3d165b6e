"""Luma/chroma tools that keep a generator from inventing colour.

A face ages mostly in luminance (wrinkles, shading, hair texture); its colour changes slowly across
the face (greyer hair, paler or ruddier skin). A generator free to write RGB at full resolution can
instead paint high-frequency colour streaks, which an age estimator may even read as age. These
helpers let a network (or a method, after any network) change luminance at full resolution and
colour only as a smooth per-channel *gain* on the input's own chroma: where the input has no colour
(a grayscale photo) the output has none either, and colour detail can only be scaled, not created.

Convention: images are (B, 3, H, W) RGB float in [-1, 1]; luma/chroma are the BT.601 YCbCr of that
range (Y in [-1, 1], Cb/Cr centred on 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC.double()).float()

# The largest smooth colour gain allowed: aging may saturate skin a little, never much.
MAX_CHROMA_GAIN = 1.2


def rgb_to_ycc(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 3, H, W) Y, Cb, Cr (same value range, chroma centred on 0)."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YCC.to(x.device, x.dtype), x)


def ycc_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycc`."""
    return torch.einsum("ij,bjhw->bihw", _YCC_TO_RGB.to(x.device, x.dtype), x)


def ycc_to_rgb_in_gamut(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma + (B, 2, H, W) chroma -> RGB in [-1, 1] without clipping channels apart.

    Clipping R, G, B separately changes a pixel's colour (it is how an over-brightened skin tone
    turns yellow or a grey one tints); instead the luma is limited to what the chroma allows, and
    the chroma is shortened only where no luma would fit it.
    """
    offsets = ycc_to_rgb(torch.cat([torch.zeros_like(luma), chroma], dim=1))  # RGB minus luma
    span = offsets.amax(1, keepdim=True) - offsets.amin(1, keepdim=True)
    shrink = torch.clamp(2.0 / span.clamp_min(1e-6), max=1.0)
    chroma, offsets = chroma * shrink, offsets * shrink
    lo, hi = -1.0 - offsets.amin(1, keepdim=True), 1.0 - offsets.amax(1, keepdim=True)
    y = torch.minimum(torch.maximum(luma, lo), hi)
    return (y + offsets).clamp(-1.0, 1.0)  # the last clamp only removes rounding error


def lowpass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Keep only low frequencies: average over ``factor`` x ``factor`` cells, then bilinear back up.

    Cheap and differentiable; the result varies no faster than one cell (1/``factor`` of the
    image), far below the pixel-scale frequencies of streaks or noise.
    """
    if factor <= 1:
        return x
    h, w = x.shape[-2:]
    small = F.avg_pool2d(x, factor, ceil_mode=True, count_include_pad=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def gain_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Chroma gain in (0, MAX_CHROMA_GAIN), exactly 1 at logit 0 (so a zero-initialised head is the identity)."""
    offset = math.log(1.0 / (MAX_CHROMA_GAIN - 1.0))  # sigmoid(offset) = 1 / MAX_CHROMA_GAIN
    return MAX_CHROMA_GAIN * torch.sigmoid(logits + offset)


def luma_chroma_edit(
    images: torch.Tensor, delta_luma: torch.Tensor, gain_logits: torch.Tensor, factor: int
) -> torch.Tensor:
    """Apply a full-resolution luma change and a smooth chroma gain to ``images``.

    ``delta_luma`` (B, 1, H, W) is added to Y; ``gain_logits`` (B, 2, H, W) are low-passed by
    ``factor`` and turned into per-pixel Cb/Cr gains (:func:`gain_from_logits`). Output in [-1, 1].
    """
    ycc = rgb_to_ycc(images)
    chroma = ycc[:, 1:] * gain_from_logits(lowpass(gain_logits, factor))
    return ycc_to_rgb_in_gamut(ycc[:, :1] + delta_luma, chroma)


def keep_colour(source: torch.Tensor, output: torch.Tensor, factor: int = 16, eps: float = 1e-3) -> torch.Tensor:
    """Project any generator's ``output`` onto "source colour, smoothly rescaled": the output's luma
    at full resolution, and chroma = source chroma x a smooth gain per channel.

    The gain is the local least-squares fit of the output chroma by the source chroma
    (low-passed products, clipped to [0, MAX_CHROMA_GAIN]); where the source has no colour the
    gain is irrelevant and the result stays colourless. Colour noise the network painted has no
    low-frequency correlation with the source chroma and is dropped.
    """
    src, out = rgb_to_ycc(source), rgb_to_ycc(output)
    cs, co = src[:, 1:], out[:, 1:]
    gain = lowpass(cs * co, factor) / (lowpass(cs * cs, factor) + eps * eps)
    gain = gain.clamp(0.0, MAX_CHROMA_GAIN)
    return ycc_to_rgb_in_gamut(out[:, :1], cs * gain)
