"""The distilled student: the default method's edit as one small network with sub-networks.

The prototype method (NumPy and OpenCV code, a target loop) cannot ship inside an app; a small
image-to-image network that learned what it does can run anywhere ONNX runs. Following *A
StyleGAN-based face age editing method for mobile terminals*, one set of weights holds several
sub-networks, each a (output resolution, channel ratio) pair: a sub-network uses the first
``ratio`` of every layer's channels and stops its decoder at its resolution, and training keeps
them consistent with the full network, so the one that fits a device's time budget is picked at
run time (``faceage.methods.budget``).

Given an aligned face (at ``input_size``, RGB in [-1, 1]) and the source and target ages, the
student predicts what the engine pastes:

- ``flow`` (B, 2, F, F): the shape change as a backward displacement, in pixels of a
  ``FLOW_UNIT``-px face (the teacher's units), at ``flow_size`` (it is smooth: a mesh warp);
- at the sub-network's resolution r, a bounded luma change and chroma-gain logits (the colour
  head of ``faceage.models.colour``: a grayscale face stays gray) applied to the input *warped by
  the flow*: ``edited = luma_chroma_edit(warp(face, flow), luma, gain)``.

A layer whose weights are sliced takes the number of input channels from its input tensor and
the output ratio at call time, so a sub-network is the full network's leading channels (no copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.colour import luma_chroma_edit
from faceage.models.config import JsonConfig
from faceage.models.layers import channels_for_ratio

FLOW_UNIT = 256.0  # the flow is in pixels of a face this wide (the prototype method's face size)
AGE_SCALE = 100.0


@dataclass(frozen=True)
class StudentConfig(JsonConfig):
    input_size: int = 128
    widths: tuple[int, ...] = (16, 32, 64, 96)  # stem (input size), then each downsampling
    top_width: int = 8  # decoder levels above the input size (the 256 px level costs most per channel)
    blocks: int = 2  # residual blocks at the bottom
    resolutions: tuple[int, ...] = (64, 128, 256)  # output resolutions of the sub-networks
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    flow_size: int = 32
    max_luma: float = 0.5  # in [-1, 1] units: 64 grey levels
    max_flow: float = 24.0  # pixels of a FLOW_UNIT face
    chroma_factor: int = 16  # at 256 px; scaled with the resolution

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "resolutions", tuple(sorted(int(r) for r in self.resolutions)))
        object.__setattr__(self, "ratios", tuple(sorted(float(c) for c in self.ratios)))
        levels = len(self.widths) - 1
        if levels < 2 or any(w < 4 for w in (*self.widths, self.top_width)):
            raise ValueError("widths: at least three levels of at least 4 channels")
        if self.input_size % 2**levels:
            raise ValueError(f"input_size {self.input_size} is not divisible by 2**{levels}")
        bottom = self.input_size // 2**levels
        allowed = {bottom * 2**k for k in range(1, 8)}
        bad = [r for r in self.resolutions if r not in allowed or r < self.input_size // 2 ** (levels - 1)]
        if bad or not self.resolutions:
            raise ValueError(f"resolutions {list(self.resolutions)}: each must be a power-of-two multiple of {bottom}")
        if self.flow_size not in allowed or self.flow_size > self.input_size:
            raise ValueError(f"flow_size {self.flow_size} must be a decoder level up to {self.input_size}")
        if not self.ratios or any(not 0 < c <= 1 for c in self.ratios) or self.ratios[-1] != 1.0:
            raise ValueError(f"ratios {list(self.ratios)} must lie in (0, 1] and include 1")

    @property
    def full(self) -> tuple[int, float]:
        return self.resolutions[-1], 1.0

    def sub_models(self) -> list[tuple[int, float]]:
        """Every (resolution, ratio) pair, the full network last."""
        return [(r, c) for r in self.resolutions for c in self.ratios]


class SlimConv(nn.Module):
    """A 3x3 conv + LeakyReLU whose output keeps the leading ``ratio`` of its channels; the input
    is sliced per part (``parts``: widths of concatenated inputs, e.g. upsampled + skip)."""

    def __init__(self, parts: tuple[int, ...], out: int, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.parts, self.out, self.stride, self.act = parts, out, stride, act
        self.weight = nn.Parameter(torch.empty(out, sum(parts), 3, 3))
        self.bias = nn.Parameter(torch.zeros(out))
        nn.init.kaiming_normal_(self.weight, a=0.2, nonlinearity="leaky_relu")

    def forward(self, xs: list[torch.Tensor], ratio: float, out: int | None = None) -> torch.Tensor:
        n_out = out if out is not None else channels_for_ratio(self.out, ratio)
        index, offset = [], 0
        for part, x in zip(self.parts, xs):
            index.append(torch.arange(offset, offset + x.shape[1], device=x.device))
            offset += part
        weight = (
            self.weight[:n_out].index_select(1, torch.cat(index))
            if len(xs) > 1
            else self.weight[:n_out, : xs[0].shape[1]]
        )
        x = torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]
        y = F.conv2d(x, weight, self.bias[:n_out], stride=self.stride, padding=1)
        return F.leaky_relu(y, 0.2) if self.act else y


class Student(nn.Module):
    """(face, source ages, target ages, resolution, ratio) -> (flow, luma change, gain logits)."""

    IN_CHANNELS = 3 + 3  # face, (source, target, target - source) planes

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = config or StudentConfig()
        w = c.widths
        levels = len(w) - 1
        self.stem = SlimConv((self.IN_CHANNELS,), w[0])
        self.down = nn.ModuleList(SlimConv((w[i],), w[i + 1], stride=2) for i in range(levels))
        self.bottom = nn.ModuleList(SlimConv((w[-1],), w[-1]) for _ in range(2 * c.blocks))
        # decoder levels, bottom-up: level i ends at input_size / 2**i; skips exist down to the input size
        self.up = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        size, width = c.input_size // 2**levels, w[-1]
        while size < max(c.resolutions[-1], c.flow_size):
            size *= 2
            skip, out = self._level(size)
            self.up[str(size)] = SlimConv((width, skip) if skip else (width,), out)
            width = out
            if size in c.resolutions:
                self.heads[str(size)] = SlimConv((width,), 3, act=False)
        self.flow_head = SlimConv((self._level(c.flow_size)[1],), 2, act=False)
        for head in [*self.heads.values(), self.flow_head]:
            assert isinstance(head, SlimConv)
            nn.init.zeros_(head.weight)  # the untrained student changes nothing

    def _level(self, size: int) -> tuple[int, int]:
        """(skip width, output width) of the decoder level ending at ``size``: the encoder level of
        that size gives both; above the input size there is no skip and ``top_width``."""
        c = self.cfg
        if size > c.input_size:
            return 0, c.top_width
        i = (c.input_size // size).bit_length() - 1
        return c.widths[i], c.widths[i]

    def forward(
        self,
        faces: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        resolution: int | None = None,
        ratio: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.cfg
        resolution = resolution or c.resolutions[-1]
        if resolution not in c.resolutions:
            raise ValueError(f"resolution {resolution} is not one of {list(c.resolutions)}")
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (B, 3, H, W), got {tuple(faces.shape)}")
        if faces.shape[-1] != c.input_size:
            faces = F.interpolate(faces, size=(c.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        b = faces.shape[0]
        src = source.to(faces).reshape(b, 1, 1, 1) / AGE_SCALE
        tgt = target.to(faces).reshape(b, 1, 1, 1) / AGE_SCALE
        planes = torch.cat([src, tgt, tgt - src], dim=1).expand(b, 3, c.input_size, c.input_size)
        x = self.stem([torch.cat([faces, planes], dim=1)], ratio)
        skips = {c.input_size: x}
        size = c.input_size
        for down in self.down:
            x = down([x], ratio)
            size //= 2
            skips[size] = x
        for i in range(0, len(self.bottom), 2):
            x = x + self.bottom[i + 1]([self.bottom[i]([x], ratio)], ratio)
        flow = luma = gain = None
        while size < max(resolution, c.flow_size):
            size *= 2
            up = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.up[str(size)]([up, skips[size]] if size in skips else [up], ratio)
            if size == c.flow_size:
                flow = c.max_flow * torch.tanh(self.flow_head([x], ratio, out=2))
            if size == resolution:
                out = self.heads[str(size)]([x], ratio, out=3)
                luma, gain = c.max_luma * torch.tanh(out[:, :1]), out[:, 1:]
        assert flow is not None and luma is not None and gain is not None
        return flow, luma, gain


def flow_grid(flow: torch.Tensor, size: int) -> torch.Tensor:
    """A backward flow (B, 2, F, F) in ``FLOW_UNIT`` pixels -> a ``grid_sample`` grid at ``size``."""
    b = flow.shape[0]
    f = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False) * (2.0 / FLOW_UNIT)
    ys, xs = torch.meshgrid(
        torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=flow.device, dtype=flow.dtype),
        torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    base = torch.stack([xs, ys], dim=-1).expand(b, size, size, 2)
    return base + f.permute(0, 2, 3, 1)


def apply_student(
    faces: torch.Tensor, flow: torch.Tensor, luma: torch.Tensor, gain: torch.Tensor, chroma_factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(edited, warped) at the resolution of ``luma``: ``faces`` warped by ``flow``, then the luma
    change and the smooth colour gain. ``chroma_factor`` is for 256 px and scaled to the size."""
    size = luma.shape[-1]
    if faces.shape[-1] != size:
        faces = F.interpolate(faces, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    warped = F.grid_sample(
        faces, flow_grid(flow, size), mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return luma_chroma_edit(warped, luma, gain, chroma_cell(chroma_factor, size)), warped


def chroma_cell(chroma_factor: int, size: int) -> int:
    """The colour gain's low-pass cell (px) at output ``size``; ``chroma_factor`` is for 256 px."""
    return max(1, chroma_factor * size // int(FLOW_UNIT))
