"""StyleGAN2 generator with resolution- and width-sliced sub-generators, and a residual discriminator.

The generator follows *A StyleGAN-based face age editing method for mobile terminals* (steps S25-S29): every forward pass may stop at a smaller
output resolution (the skip-RGB image at that size) and use only the first ``ceil(ratio * C)``
channels of every convolution. Sub-generators are the full network's weights, sliced at call time,
so training a random (resolution, ratio) per step trains one shared set of parameters.

Convention: images are (B, 3, H, W) float in about [-1, 1]; W+ codes are (B, num_ws, w_dim) with
``num_ws = 2 * log2(resolution) - 2`` (rosinality order: conv 4x4, toRGB 4x4, then per block
up-conv, conv, toRGB, where each toRGB shares its index with the next block's up-conv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, overload

import torch
from torch import nn

from faceage.models.config import JsonConfig
from faceage.models.layers import (
    EqualConv2d,
    EqualLinear,
    SkipUpsample,
    StyledConv,
    ToRGB,
    channels_for_ratio,
)


def _check_resolution(resolution: int, what: str) -> int:
    if not isinstance(resolution, int) or resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"{what} must be a power of 2 >= 8, got {resolution!r}")
    return resolution


class _NetworkConfig(JsonConfig):
    """What GeneratorConfig and DiscriminatorConfig share (both have resolution, channel_base,
    channel_max and blur_kernel fields); no fields of its own."""

    resolution: int
    channel_base: int
    channel_max: int
    blur_kernel: tuple[int, ...]

    def _check_common(self) -> None:
        """For ``__post_init__``: validate the resolution and store blur_kernel as a tuple."""
        _check_resolution(self.resolution, f"{type(self).__name__}.resolution")
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))

    def channels(self, res: int) -> int:
        """Feature maps at ``res``: min(channel_base // res, channel_max), at least 1."""
        return max(1, min(self.channel_base // res, self.channel_max))

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Sizes the network works at: 8, 16, ..., resolution (the stops of a sub-generator)."""
        return tuple(2**i for i in range(3, int(math.log2(self.resolution)) + 1))


@dataclass(frozen=True)
class GeneratorConfig(_NetworkConfig):
    """Hyperparameters of :class:`Generator`; saved beside the weights as JSON."""

    resolution: int = 128  # full output size (power of 2, >= 8); 256/1024 for official checkpoints
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8  # step S25: 8 fully connected layers
    channel_base: int = 16384  # channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 256
    lr_mul_mapping: float = 0.01  # StyleGAN: the mapping net learns 100x slower
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)  # FIR taps for up/down-sampling
    w_avg_beta: float = 0.995  # EMA decay of the tracked mean w (truncation centre)
    # Modulated-conv implementation: True = per-sample weights + grouped conv, False = scale the
    # activations + one batched conv; None = fused at batch 1 only. Same maths either way.
    fused_modconv: bool | None = None

    def __post_init__(self) -> None:
        self._check_common()
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max) < 1:
            raise ValueError(f"GeneratorConfig sizes must be positive: {self}")


@dataclass(frozen=True)
class DiscriminatorConfig(_NetworkConfig):
    """Hyperparameters of :class:`Discriminator`."""

    resolution: int = 128  # largest input size; any power of 2 from 8 up to it is accepted
    channel_base: int = 16384  # channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 256
    mbstd_group: int = 4  # minibatch-std group size (reduced to a divisor of the batch when needed)
    mbstd_channels: int = 1
    c_dim: int = 0  # > 0: conditioning label of this size, by projection (StyleGAN2-ADA style)
    cmap_dim: int = 0  # projection size; 0 = channels at 4x4
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self) -> None:
        self._check_common()
        if self.mbstd_group < 1 or self.c_dim < 0 or self.cmap_dim < 0:
            raise ValueError(f"bad DiscriminatorConfig: {self}")


class MappingNetwork(nn.Module):
    """z -> pixel norm -> ``mapping_layers`` x (equalised FC, lr_mul 0.01, leaky ReLU) -> w."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=cfg.lr_mul_mapping, activate=True)
            for i in range(cfg.mapping_layers)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: [up-conv], conv, toRGB. The 4x4 block starts from the learned constant."""

    def __init__(self, in_channels: int, out_channels: int, res: int, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.res = res
        self.out_channels = out_channels
        if res == 4:
            self.const = nn.Parameter(torch.randn(1, out_channels, 4, 4))
            self.conv0 = None
            self.skip_up = None
        else:
            self.conv0 = StyledConv(
                in_channels, out_channels, cfg.w_dim, res, upsample=True, blur_kernel=cfg.blur_kernel
            )
            self.skip_up = SkipUpsample(cfg.blur_kernel)
        self.conv1 = StyledConv(out_channels, out_channels, cfg.w_dim, res, blur_kernel=cfg.blur_kernel)
        self.torgb = ToRGB(out_channels, cfg.w_dim)

    @property
    def num_conv(self) -> int:
        return 1 if self.conv0 is None else 2


class SubGenerator(nn.Module):
    """A (resolution, ratio) slice of a :class:`Generator`: ``forward(ws) -> img``.

    Holds the full generator as a submodule, so it shares (not copies) its parameters and follows it
    across ``.to()``; ``num_parameters()`` counts only the weights this slice reads.
    """

    def __init__(self, generator: Generator, resolution: int, ratio: float, noise_mode: str = "const") -> None:
        super().__init__()
        generator._check_slice(resolution, ratio)
        self.generator = generator
        self.resolution = resolution
        self.ratio = ratio
        self.noise_mode = noise_mode

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws_for(self.resolution)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(ws, resolution=self.resolution, ratio=self.ratio, noise_mode=self.noise_mode)

    def num_parameters(self) -> int:
        return self.generator.count_parameters(self.resolution, self.ratio, include_mapping=False)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, ratio={self.ratio}, noise_mode={self.noise_mode!r}"


class Generator(nn.Module):
    """StyleGAN2 generator (mapping + skip-architecture synthesis) with sliceable sub-generators."""

    RATIOS = (0.25, 0.5, 0.75, 1.0)

    w_avg: torch.Tensor  # a registered buffer

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping_network = MappingNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        blocks = {}
        in_ch = cfg.channels(4)
        for res in (4,) + cfg.resolutions:
            out_ch = cfg.channels(res)
            blocks[f"b{res}"] = SynthesisBlock(in_ch, out_ch, res, cfg)
            in_ch = out_ch
        self.blocks = nn.ModuleDict(blocks)
        self.num_ws = self.num_ws_for(cfg.resolution)

    # -- bookkeeping -------------------------------------------------------------------------
    @staticmethod
    def num_ws_for(resolution: int) -> int:
        """W+ entries read when synthesising up to ``resolution``."""
        return 2 * int(math.log2(resolution)) - 2

    def _check_slice(self, resolution: int, ratio: float) -> None:
        if resolution not in self.cfg.resolutions:
            raise ValueError(f"resolution must be one of {self.cfg.resolutions}, got {resolution!r}")
        channels_for_ratio(1, ratio)  # validates the range

    def layer_channels(self, resolution: int | None = None, ratio: float = 1.0) -> dict[int, int]:
        """Channels each block produces in the (resolution, ratio) sub-generator."""
        resolution = self.cfg.resolution if resolution is None else resolution
        return {
            blk.res: channels_for_ratio(blk.out_channels, ratio)
            for blk in self.synthesis_blocks()
            if blk.res <= resolution
        }

    def count_parameters(self, resolution: int | None = None, ratio: float = 1.0, include_mapping: bool = True) -> int:
        """Number of parameters the (resolution, ratio) sub-generator reads (sliced weights only)."""
        resolution = self.cfg.resolution if resolution is None else resolution
        self._check_slice(resolution, ratio)
        w_dim = self.cfg.w_dim
        n = sum(p.numel() for p in self.mapping_network.parameters()) if include_mapping else 0
        cin = 0  # set by the 4 px block, which reads no input channels
        for blk in self.synthesis_blocks():
            if blk.res > resolution:
                break
            c = channels_for_ratio(blk.out_channels, ratio)
            if blk.conv0 is None:
                n += c * 16
                cin = c
            convs = [(cin, c)] + [(c, c)] if blk.conv0 is not None else [(c, c)]
            for ci, co in convs:
                # weight, modulation (weight + bias), noise strength, bias
                n += co * ci * 9 + (w_dim + 1) * ci + 1 + co
            n += 3 * c + (w_dim + 1) * c + 3  # toRGB
            cin = c
        return n

    # -- mapping -----------------------------------------------------------------------------
    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor) -> None:
        """Move the tracked mean w towards the batch mean (EMA with ``cfg.w_avg_beta``)."""
        w = w.detach().float()
        if w.ndim == 3:
            w = w[:, 0]
        self.w_avg.copy_(w.mean(dim=0).lerp(self.w_avg, self.cfg.w_avg_beta))

    def mapping(
        self,
        z: torch.Tensor,
        truncation: float = 1.0,
        truncation_cutoff: int | None = None,
        update_avg: bool | None = None,
    ) -> torch.Tensor:
        """z (B, z_dim) -> w (B, w_dim); updates ``w_avg`` when ``update_avg`` (default: in training mode).

        Truncation pulls w towards ``w_avg``: ``w_avg + truncation * (w - w_avg)``. With
        ``truncation_cutoff`` set, returns W+ (B, num_ws, w_dim) truncated in the first
        ``truncation_cutoff`` entries only (coarse styles), as StyleGAN2-ADA does.
        """
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z must be (B, {self.cfg.z_dim}), got {tuple(z.shape)}")
        w = self.mapping_network(z)
        if self.training if update_avg is None else update_avg:
            self.update_w_avg(w)
        if truncation_cutoff is None:
            if truncation != 1.0:
                w = self.w_avg.to(w.dtype).lerp(w, truncation)
            return w
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation != 1.0:
            head = self.w_avg.to(w.dtype).lerp(ws[:, :truncation_cutoff], truncation)
            ws = torch.cat([head, ws[:, truncation_cutoff:]], dim=1)
        return ws

    def synthesis_blocks(self) -> list[SynthesisBlock]:
        """The synthesis blocks from 4 px up, typed (``nn.ModuleDict`` yields plain modules)."""
        return [cast(SynthesisBlock, blk) for blk in self.blocks.values()]

    # -- synthesis ---------------------------------------------------------------------------
    @overload
    def synthesis(
        self,
        ws: torch.Tensor,
        resolution: int | None = ...,
        ratio: float = ...,
        noise_mode: str = ...,
        return_all: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def synthesis(
        self,
        ws: torch.Tensor,
        resolution: int | None = ...,
        ratio: float = ...,
        noise_mode: str = ...,
        *,
        return_all: Literal[True],
    ) -> dict[int, torch.Tensor]: ...

    def synthesis(
        self,
        ws: torch.Tensor,
        resolution: int | None = None,
        ratio: float = 1.0,
        noise_mode: str = "random",
        return_all: bool = False,
    ) -> torch.Tensor | dict[int, torch.Tensor]:
        """W+ (B, num_ws', w_dim) or w (B, w_dim) -> image (B, 3, resolution, resolution).

        Stops after the block at ``resolution`` and returns the skip-RGB sum there; uses the first
        ``ceil(ratio * C)`` channels of every conv and toRGB. ``ws`` may hold exactly the entries
        this resolution reads or all ``num_ws``. ``return_all`` returns {res: skip image} for every
        resolution from 8 up to ``resolution`` (all sub-resolution outputs of one pass).
        """
        resolution = self.cfg.resolution if resolution is None else resolution
        self._check_slice(resolution, ratio)
        need = self.num_ws_for(resolution)
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, need, -1)
        if ws.ndim != 3 or ws.shape[1] < need or ws.shape[2] != self.cfg.w_dim:
            raise ValueError(
                f"ws must be (B, >={need}, {self.cfg.w_dim}) or (B, {self.cfg.w_dim}), got {tuple(ws.shape)}"
            )
        b = ws.shape[0]
        fused = self.cfg.fused_modconv if self.cfg.fused_modconv is not None else b == 1

        x = img = None
        outputs: dict[int, torch.Tensor] = {}
        idx = 0
        for blk in self.synthesis_blocks():
            if blk.res > resolution:
                break
            c = channels_for_ratio(blk.out_channels, ratio)
            if blk.conv0 is None:
                x = blk.const[:, :c].expand(b, -1, -1, -1)
                x = blk.conv1(x, ws[:, 0], c, noise_mode, fused)
                img = blk.torgb(x, ws[:, 1], fused)
                idx = 1
            else:
                assert blk.skip_up is not None and img is not None  # every block above 4 px has both
                x = blk.conv0(x, ws[:, idx], c, noise_mode, fused)
                x = blk.conv1(x, ws[:, idx + 1], c, noise_mode, fused)
                img = blk.skip_up(img) + blk.torgb(x, ws[:, idx + 2], fused)
                idx += 2
                outputs[blk.res] = img
        assert img is not None  # the 4 px block always runs
        return outputs if return_all else img

    def forward(
        self,
        z: torch.Tensor,
        resolution: int | None = None,
        ratio: float = 1.0,
        truncation: float = 1.0,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        """z (B, z_dim) -> image (B, 3, res, res) in about [-1, 1]."""
        w = self.mapping(z, truncation=truncation)
        return self.synthesis(w, resolution=resolution, ratio=ratio, noise_mode=noise_mode)

    def sub_generator(self, resolution: int, ratio: float, noise_mode: str = "const") -> SubGenerator:
        """A thin ws -> img module for one (resolution, ratio), sharing this generator's weights."""
        return SubGenerator(self, resolution, ratio, noise_mode)


# ---------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) + 1x1 downsampling skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = EqualConv2d(
            in_channels, out_channels, 1, bias=False, activate=False, downsample=True, blur_kernel=blur_kernel
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv1(self.conv0(x)) + self.skip(x)) * (1.0 / math.sqrt(2.0))


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the feature std over groups of samples as extra channels (StyleGAN2).

    The group is ``group_size`` when it divides the batch, otherwise the largest divisor of the
    batch below it (if that is 1 while the batch is > 1, the whole batch is one group), so odd
    batch sizes work. Samples are grouped with a stride (sample i with i + B/G, ...) as in the
    reference, and the group size is a static function of the shape (compile-friendly).
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    if g == 1 and b > 1:
        g = b
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w).float()
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # (B/G, F, C/F, H, W)
    y = y.mean(dim=(2, 3, 4))  # (B/G, F)
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator that accepts any power-of-2 input size from 8 to cfg.resolution.

    Each resolution has its own fromRGB (1x1 conv) entry; an input of size r enters there and
    goes through the residual blocks from r down to 4x4, then minibatch-std, a 3x3 conv, and two
    FC layers. With ``c_dim > 0`` the output is the projection of the features on an embedding of
    the label (StyleGAN2-ADA), divided by sqrt(cmap_dim).
    """

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.from_rgb = nn.ModuleDict({f"b{r}": EqualConv2d(3, cfg.channels(r), 1) for r in cfg.resolutions})
        self.blocks = nn.ModuleDict(
            {
                f"b{r}": DiscriminatorBlock(cfg.channels(r), cfg.channels(r // 2), cfg.blur_kernel)
                for r in cfg.resolutions
            }
        )
        c4 = cfg.channels(4)
        self.final_conv = EqualConv2d(c4 + cfg.mbstd_channels, c4, 3)
        self.final_fc = EqualLinear(c4 * 16, c4, activate=True)
        self.cmap_dim = (cfg.cmap_dim or c4) if cfg.c_dim > 0 else 0
        self.out = EqualLinear(c4, self.cmap_dim or 1)
        self.embed = EqualLinear(cfg.c_dim, self.cmap_dim) if cfg.c_dim > 0 else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """img (B, 3, r, r), r in 8..cfg.resolution; c (B, c_dim) when conditional -> logits (B, 1)."""
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != img.shape[3]:
            raise ValueError(f"img must be (B, 3, r, r), got {tuple(img.shape)}")
        r = img.shape[2]
        if r not in self.cfg.resolutions:
            raise ValueError(f"image size must be one of {self.cfg.resolutions}, got {r}")
        if (c is None) != (self.embed is None):
            raise ValueError(
                f"label c is {'required' if self.embed is not None else 'not accepted'} (c_dim={self.cfg.c_dim})"
            )
        x = self.from_rgb[f"b{r}"](img)
        for res in reversed(self.cfg.resolutions):
            if res > r:
                continue
            x = self.blocks[f"b{res}"](x)
        x = minibatch_stddev(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.final_conv(x)
        x = self.final_fc(x.flatten(1))
        x = self.out(x)
        if self.embed is not None:
            if c is None:
                raise ValueError("this discriminator is conditional: pass c")
            cmap = self.embed(c.to(x.dtype))
            x = (x * cmap).sum(dim=1, keepdim=True) * (1.0 / math.sqrt(self.cmap_dim))
        return x
