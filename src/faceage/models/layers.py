"""StyleGAN2 building blocks in plain torch: equalised layers, modulated convolution, FIR resampling.

Every layer that the generator slices by channel ratio takes the number of output channels it
should produce (``out_channels``) at call time and reads its input width from the tensor, so a
sub-network uses the *first* channels of the full network's weights without copying them.

Conventions (the same as rosinality/stylegan2-pytorch, so official checkpoints load unchanged):

- Equalised learning rate: weights are stored as N(0, 1) / lr_mul and scaled by
  ``lr_mul / sqrt(fan_in)`` at every call; biases are scaled by ``lr_mul``.
- Activation: ``leaky_relu(x + bias, 0.2) * sqrt(2)``.
- Resampling with the separable [1, 3, 3, 1] FIR kernel (``upfirdn2d`` semantics: upsample by zero
  insertion, pad, convolve, downsample by striding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def channels_for_ratio(channels: int, ratio: float) -> int:
    """Number of leading channels a sub-network keeps: ``ceil(ratio * channels)``, at least 1.

    A tiny tolerance keeps float products such as 0.7 * 10 = 7.000000000000001 from rounding up.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"channel ratio must be in (0, 1], got {ratio}")
    return max(1, min(channels, math.ceil(ratio * channels - 1e-6)))


def make_blur_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps -> normalised 2-D kernel (sums to 1)."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim != 1:
        raise ValueError(f"blur kernel must be 1-D taps, got shape {tuple(k.shape)}")
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad (pad0 before, pad1 after), FIR filter, downsample; per channel.

    Same result as the reference ``upfirdn2d_native`` (square kernel, same factor and pad on both
    axes). ``kernel`` is (kh, kw); it is flipped so this is a true convolution.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    weight = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    if p0 == p1:
        x = F.conv2d(x, weight, groups=c, padding=p0)
    else:
        x = F.conv2d(F.pad(x, (p0, p1, p0, p1)), weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, activate: bool = True, inplace: bool = False) -> torch.Tensor:
    """Add a per-channel bias (sliced to x's channel count) and apply leaky ReLU(0.2) * sqrt(2).

    ``inplace`` (only for a fresh tensor nobody else holds, outside autograd) saves the allocations,
    which cost as much as the arithmetic on a 2-core CPU.
    """
    if bias is not None:
        b = bias[: x.shape[1]].to(x.dtype)
        b = b.view(1, -1, 1, 1) if x.ndim == 4 else b.view(1, -1)
        x = x.add_(b) if inplace else x + b
    if activate:
        x = F.leaky_relu_(x, 0.2).mul_(LRELU_GAIN) if inplace else F.leaky_relu(x, 0.2) * LRELU_GAIN
    return x


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    ``forward(x, out_features)`` uses only the first ``out_features`` rows (the style affine of a
    channel-sliced convolution needs only the styles of the input channels it reads).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.lr_mul = lr_mul
        self.scale = lr_mul / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        n = self.out_features if out_features is None else out_features
        weight = self.weight[:n] * self.scale
        bias = None if self.bias is None else self.bias[:n] * self.lr_mul
        if self.activate:
            return bias_act(F.linear(x, weight), bias, activate=True)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}, activate={self.activate}"


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate, optional [1,3,3,1] blur + stride-2 downsampling."""

    blur_kernel: torch.Tensor  # a registered buffer

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activate: bool = True,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activate = activate
        self.downsample = downsample
        if downsample:
            # Blur first, then a stride-2 valid convolution: p = (taps - 2) + (k - 1).
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            self.blur_pad = ((p + 1) // 2, p // 2)
            self.register_buffer("blur_kernel", make_blur_kernel(blur_kernel), persistent=False)
        self.padding = 0 if downsample else kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = upfirdn2d(x, self.blur_kernel, pad=self.blur_pad)
        x = F.conv2d(x, self.weight * self.scale, stride=2 if self.downsample else 1, padding=self.padding)
        return bias_act(x, self.bias, self.activate)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
            f"downsample={self.downsample}, activate={self.activate}"
        )


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated (and optionally demodulated) convolution, optionally upsampling by 2.

    ``forward(x, w, out_channels)``: x is (B, C_in', H, W) with C_in' <= in_channels (the first
    channels), w is (B, w_dim); the layer produces the first ``out_channels`` channels. The weight
    scale uses the full layer's fan-in, so a sliced layer is exactly the full layer with the
    remaining channels removed (demodulation renormalises per output channel anyway).

    ``fused=True`` folds the styles into per-sample weights and runs one grouped convolution (best
    at batch 1, the export path); ``fused=False`` scales activations instead and runs one ordinary
    convolution over the batch (best for large batches). Both compute the same function.
    Upsampling is a stride-2 transposed convolution followed by the [1,3,3,1] blur (x4 gain).
    """

    blur_kernel: torch.Tensor  # a registered buffer

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur_pad = ((p + 1) // 2 + 1, p // 2 + 1)
            self.register_buffer("blur_kernel", make_blur_kernel(blur_kernel) * 4.0, persistent=False)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, out_channels: int | None = None, fused: bool = True
    ) -> torch.Tensor:
        b, cin, h, wd = x.shape
        cout = self.out_channels if out_channels is None else out_channels
        k = self.kernel_size
        weight = self.weight[:cout, :cin]  # a view: the sub-layer reads the full layer's weights
        # Equalised-lr scale folded into the (B, cin) styles rather than the (cout, cin, k, k) weight.
        styles = self.modulation(w, cin) * self.scale
        dcoefs = None
        if self.demodulate:
            # sum_{i,kh,kw} (W_oi s_i)^2 = sum_i s_i^2 |W_oi|^2: a (B,cin)@(cin,cout) product instead
            # of materialising B per-sample weights just to normalise them.
            wsq = weight.square().sum(dim=(2, 3))  # (cout, cin); not a norm: its gradient is safe at 0
            dcoefs = (styles.square() @ wsq.t().to(styles.dtype) + 1e-8).rsqrt()  # (B, cout)

        if not fused:
            x = x * styles.to(x.dtype).view(b, cin, 1, 1)
            if self.upsample:
                x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
                x = upfirdn2d(x, self.blur_kernel, pad=self.blur_pad)
            else:
                x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
            if dcoefs is not None:
                x = x * dcoefs.to(x.dtype).view(b, cout, 1, 1)
            return x

        # Per-sample weights in one pass over the kernel: W_oi * (s_i * d_o).
        coef = styles.view(b, 1, cin) if dcoefs is None else dcoefs.view(b, cout, 1) * styles.view(b, 1, cin)
        wb = weight.unsqueeze(0) * coef.view(b, -1, cin, 1, 1).to(weight.dtype)  # (B, cout, cin, k, k)
        x = x.reshape(1, b * cin, h, wd)
        if self.upsample:
            wb = wb.transpose(1, 2).reshape(b * cin, cout, k, k)
            x = F.conv_transpose2d(x, wb.to(x.dtype), stride=2, groups=b)
            x = x.reshape(b, cout, x.shape[2], x.shape[3])
            return upfirdn2d(x, self.blur_kernel, pad=self.blur_pad)
        x = F.conv2d(x, wb.reshape(b * cout, cin, k, k).to(x.dtype), padding=self.padding, groups=b)
        return x.reshape(b, cout, h, wd)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )


class StyledConv(nn.Module):
    """Modulated conv -> add per-pixel noise x learned strength -> bias -> leaky ReLU x sqrt(2)."""

    noise_const: torch.Tensor  # a registered buffer

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Fixed noise image for noise_mode="const" (deterministic synthesis); saved with the weights.
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        out_channels: int | None = None,
        noise_mode: str = "random",
        fused: bool = True,
    ) -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        x = self.conv(x, w, out_channels, fused=fused)
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or self.bias.requires_grad))
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            noise = noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        if noise_mode != "none":
            x = x.add_(noise) if inplace else x + noise
        return bias_act(x, self.bias, inplace=inplace)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias: features -> 3-channel skip image."""

    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        return bias_act(self.conv(x, w, fused=fused), self.bias, activate=False)


class SkipUpsample(nn.Module):
    """Upsample the running RGB image by 2 with the [1,3,3,1] kernel (upfirdn2d, up=2, gain 4)."""

    kernel: torch.Tensor  # a registered buffer

    def __init__(self, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(blur_kernel) * 4.0, persistent=False)
        p = len(blur_kernel) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)


def fir_downsample(img: torch.Tensor, size: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Downsample (B, C, H, H) to (B, C, size, size) by repeated [1,3,3,1] blur + stride 2.

    The same anti-aliasing filter the networks use, so real images shown to the discriminator at a
    sub-resolution, and full-generator outputs compared with a sub-generator's (the
    consistency loss), are filtered like the generator's own skip path. ``H / size`` must be a power of 2.
    """
    h = img.shape[-1]
    if img.shape[-2] != h or size > h or h % size or (h // size) & (h // size - 1):
        raise ValueError(f"cannot FIR-downsample {tuple(img.shape[-2:])} to {size}x{size} (needs a power-of-2 factor)")
    kernel = make_blur_kernel(blur_kernel).to(img.device)
    p = len(blur_kernel) - 2
    while img.shape[-1] > size:
        img = upfirdn2d(img, kernel, down=2, pad=((p + 1) // 2, p // 2))
    return img


def box_downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area (box) filter to ``size`` x ``size``: each output pixel is the mean of its k x k block.

    Used for real images and for the full generator's output when a sub-generator is judged or
    compared at a lower resolution, so both sides see the same anti-aliased downsampling.
    """
    h, w = images.shape[-2:]
    if h != w:
        raise ValueError(f"expected square images, got {h}x{w}")
    if h == size:
        return images
    if size > h:
        raise ValueError(f"cannot box-downsample {h} px images to a larger size {size}")
    if h % size == 0:
        return F.avg_pool2d(images, kernel_size=h // size)
    return F.interpolate(images, size=(size, size), mode="area")
