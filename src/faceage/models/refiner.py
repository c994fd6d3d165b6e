"""The realism refiner: a small U-Net that corrects the prototype method's aged face.

Averages lose what makes a face look its age (crisp wrinkles, skin texture, a child's smoothness);
a network trained against real faces of the target age can put some of it back, but only as a
correction: it sees the prototype's output, the input face warped the same way (so both line up
pixel for pixel), and the source and target ages as constant planes, and returns the output with

- a luma change bounded by ``max_luma`` (in [-1, 1] units: 0.25 is 32 grey levels), at full
  resolution, and
- a smooth chroma gain on the output's own colour (``faceage.models.colour``), so it cannot paint
  colour streaks and a grayscale face stays gray.

The output layer starts at zero: an untrained refiner returns its input exactly. Images are
(B, 3, S, S) RGB floats in [-1, 1]; ages in years.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from faceage.models.colour import luma_chroma_edit
from faceage.models.config import JsonConfig

AGE_SCALE = 100.0  # ages enter as planes of age / AGE_SCALE


@dataclass(frozen=True)
class RefinerConfig(JsonConfig):
    resolution: int = 128
    channels: int = 24  # width of the first level; each level below doubles it
    levels: int = 3  # downsamplings (128 px -> 16 px at the bottom)
    blocks: int = 2  # residual blocks at the bottom
    max_luma: float = 0.25
    chroma_factor: int = 16  # the colour gain varies no faster than 1/16 of the face

    def __post_init__(self) -> None:
        if self.resolution % (2**self.levels):
            raise ValueError(f"resolution {self.resolution} is not divisible by 2**levels ({2**self.levels})")
        if self.channels < 4 or self.levels < 1 or self.blocks < 0:
            raise ValueError("channels >= 4, levels >= 1 and blocks >= 0 are needed")
        if not 0 < self.max_luma <= 2:
            raise ValueError(f"max_luma must be in (0, 2], got {self.max_luma}")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, padding_mode="reflect" if stride == 1 else "zeros"),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Refiner(nn.Module):
    """(aged face, input warped alike, source ages, target ages) -> refined aged face; see the module docstring."""

    IN_CHANNELS = 3 + 3 + 3  # aged, warped input, (source, target, target - source) planes

    def __init__(self, config: RefinerConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = config or RefinerConfig()
        widths = [c.channels * 2**i for i in range(c.levels + 1)]
        self.stem = _conv(self.IN_CHANNELS, widths[0])
        self.down = nn.ModuleList(_conv(widths[i], widths[i + 1], stride=2) for i in range(c.levels))
        self.bottom = nn.Sequential(*[_Residual(widths[-1]) for _ in range(c.blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(widths[i + 1], widths[i]))
            for i in reversed(range(c.levels))
        )
        self.merge = nn.ModuleList(_conv(2 * widths[i], widths[i]) for i in reversed(range(c.levels)))
        self.head = nn.Conv2d(widths[0], 3, 3, 1, 1, padding_mode="reflect")
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # Conv2d has a bias by default

    def residual(
        self, aged: torch.Tensor, warped: torch.Tensor, source: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(luma change (B, 1, S, S), chroma gain logits (B, 2, S, S)) before they are applied."""
        c = self.cfg
        for name, x in (("aged", aged), ("warped", warped)):
            if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (c.resolution, c.resolution):
                raise ValueError(f"{name} must be (B, 3, {c.resolution}, {c.resolution}), got {tuple(x.shape)}")
        if warped.shape != aged.shape:
            raise ValueError(f"aged {tuple(aged.shape)} and warped {tuple(warped.shape)} differ")
        b = aged.shape[0]
        src = source.to(aged).reshape(b, 1, 1, 1) / AGE_SCALE
        tgt = target.to(aged).reshape(b, 1, 1, 1) / AGE_SCALE
        planes = torch.cat([src, tgt, tgt - src], dim=1).expand(b, 3, c.resolution, c.resolution)
        x = self.stem(torch.cat([aged, warped, planes], dim=1))
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        out = self.head(x)
        return c.max_luma * torch.tanh(out[:, :1]), out[:, 1:]

    def forward(
        self, aged: torch.Tensor, warped: torch.Tensor, source: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        luma, gain_logits = self.residual(aged, warped, source, target)
        return luma_chroma_edit(aged, luma, gain_logits, self.cfg.chroma_factor)
