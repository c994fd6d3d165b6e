"""IPCGAN networks (*Face Aging with Identity-Preserved Conditional Generative Adversarial Networks*): a conditional generator and an (image, age group) discriminator.

Generator: the aligned face (B, 3, S, S) concatenated with G one-hot condition maps (B, G, S, S)
goes through an encoder (7x7 conv, two stride-2 convs), residual blocks at 1/4 resolution and a
decoder (two nearest-upsample + 3x3 conv stages, 7x7 conv), with BatchNorm and (leaky) ReLU as in
the paper (upsample + conv replaces its transposed convs, which paint checkerboards). The last
layer predicts a *change* that is added to the input (``residual=True``, default): at
initialisation the generator is the identity, so identity is kept from the first step and training
spends its steps on the age change; ``residual=False`` gives the paper's direct tanh output. With ``head="luma"`` the last layer's three
channels are a full-resolution luma change and two chroma-gain logits that are low-passed
(``faceage.models.colour.luma_chroma_edit``): the network can sharpen, wrinkle and shade at pixel
scale, but can only rescale the face's own colour smoothly, so it cannot paint colour streaks and
keeps a grayscale face grayscale (``head="rgb"``: a free RGB change, the first shipped weights).

Discriminator: judges (image, group) pairs. The image goes through a stride-2 conv; the
condition maps, at that half resolution, are concatenated there (as in IPCGAN's reference code),
then strided convs with BatchNorm and LeakyReLU end in a patch of LSGAN scores (B, 1, s, s).
``ProjectedDiscriminator`` (``d_type="projected"``) instead judges frozen ImageNet features, as in
"Projected GANs Converge Faster" (Sauer et al., 2021); see its docstring.

Convention: images are (B, 3, S, S) float in [-1, 1]; ``groups`` are (B,) int64 group indices
(or (B, G) float group weights, see ``condition_maps``).
Plain ``nn.Module`` without I/O; weights are read and written by ``faceage.models.io``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from faceage.models.colour import luma_chroma_edit
from faceage.models.config import JsonConfig

HEADS = ("rgb", "luma")
D_TYPES = ("patch", "projected")


@dataclass(frozen=True)
class IPCGANConfig(JsonConfig):
    """Architecture of both IPCGAN networks; saved beside the weights."""

    resolution: int = 128
    num_groups: int = 8
    g_channels: int = 32  # first encoder width; then 2x and 4x after the two downsamplings
    g_blocks: int = 6  # residual blocks at 1/4 resolution (the paper's 6)
    residual: bool = True
    d_channels: int = 64
    d_layers: int = 4  # strided convs, 64 -> 128 -> 256 -> 512 channels with the default
    head: str = "rgb"  # "luma": full-resolution luma change + low-frequency chroma gain (needs residual)
    chroma_factor: int = 16  # the chroma gain varies no faster than resolution / chroma_factor
    d_type: str = "patch"  # "projected": ProjectedDiscriminator on frozen MobileNetV2 features

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "luma" and not self.residual:
            raise ValueError("head='luma' edits the input, so it needs residual=True")
        if self.chroma_factor < 1 or self.resolution % self.chroma_factor:
            raise ValueError(f"chroma_factor must divide the resolution, got {self.chroma_factor}")
        if self.d_type not in D_TYPES:
            raise ValueError(f"d_type must be one of {D_TYPES}, got {self.d_type!r}")
        if self.resolution < 16 or self.resolution % 16:
            raise ValueError(f"resolution must be a multiple of 16 >= 16, got {self.resolution}")
        if self.num_groups < 2:
            raise ValueError(f"num_groups must be >= 2, got {self.num_groups}")
        for name in ("g_channels", "g_blocks", "d_channels", "d_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if 2 ** (self.d_layers + 1) > self.resolution:
            raise ValueError(f"d_layers={self.d_layers} downsamples a {self.resolution} px image below 2 px")


def condition_maps(
    groups: torch.Tensor, num_groups: int, size: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Condition planes (B, G, size, size) from group indices or group weights.

    ``groups`` (B,) int: one-hot planes (the paper's: all ones in the group's plane, zeros elsewhere).
    ``groups`` (B, G) float: each plane filled with its weight; a mix of two neighbouring groups
    asks for an age between their centres (see ``faceage.methods.ipcgan``).
    """
    if groups.ndim == 2 and groups.is_floating_point():
        if groups.shape[1] != num_groups:
            raise ValueError(f"group weights must have {num_groups} columns, got shape {tuple(groups.shape)}")
        weights = groups.to(dtype)
    elif groups.ndim == 1 and not groups.is_floating_point():
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= num_groups):
            raise ValueError(f"group indices must be in [0, {num_groups}), got {groups.tolist()}")
        weights = F.one_hot(groups.long(), num_groups).to(dtype)
    else:
        raise ValueError(
            f"groups must be (B,) integer indices or (B, {num_groups}) float weights, "
            f"got shape {tuple(groups.shape)} of {groups.dtype}"
        )
    return weights[:, :, None, None].expand(-1, -1, size, size)


def _check_images(images: torch.Tensor, resolution: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if tuple(images.shape[-2:]) != (resolution, resolution):
        raise ValueError(f"expected {resolution}x{resolution} images, got {images.shape[-1]}x{images.shape[-2]}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1], got dtype {images.dtype}")


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            cin, cout, kernel, stride, kernel // 2, bias=False, padding_mode="reflect" if stride == 1 else "zeros"
        ),
        nn.BatchNorm2d(cout),
        act,
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with a skip, at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(channels, channels, 3, 1, nn.ReLU(inplace=True)),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class IPCGANGenerator(nn.Module):
    """(face, target group) -> face at that age; see the module docstring."""

    def __init__(self, config: IPCGANConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = config or IPCGANConfig()
        c1, c2, c3 = c.g_channels, 2 * c.g_channels, 4 * c.g_channels
        self.encoder = nn.Sequential(
            _conv_bn(3 + c.num_groups, c1, 7, 1, nn.ReLU(inplace=True)),
            _conv_bn(c1, c2, 3, 2, nn.ReLU(inplace=True)),
            _conv_bn(c2, c3, 3, 2, nn.ReLU(inplace=True)),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(c3) for _ in range(c.g_blocks)])
        # nearest upsampling + 3x3 conv instead of the paper's transposed convs: a stride-2 4x4
        # transposed conv paints a checkerboard (Odena et al., 2016), plainly visible after 100 steps
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_bn(c3, c2, 3, 1, nn.ReLU(inplace=True)),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_bn(c2, c1, 3, 1, nn.ReLU(inplace=True)),
        )
        self.to_rgb = nn.Conv2d(c1, 3, 7, 1, 3, padding_mode="reflect")
        if c.residual:  # start as the identity: the change is exactly zero at step 0
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)  # type: ignore[arg-type]  # Conv2d has a bias by default

    def forward(self, images: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        _check_images(images, c.resolution)
        cond = condition_maps(groups.to(images.device), c.num_groups, c.resolution, images.dtype)
        x = self.decoder(self.blocks(self.encoder(torch.cat([images, cond], dim=1))))
        out = self.to_rgb(x)
        if c.head == "luma":
            return luma_chroma_edit(images, 2.0 * torch.tanh(out[:, :1]), out[:, 1:], c.chroma_factor)
        if c.residual:
            # the change is bounded, and the sum kept in [-1, 1] without killing gradients inside
            return (images + 2.0 * torch.tanh(out)).clamp(-1.0, 1.0)
        return torch.tanh(out)


class IPCGANDiscriminator(nn.Module):
    """(image, group) -> LSGAN patch scores (B, 1, s, s); real pairs should score 1, fakes 0."""

    def __init__(self, config: IPCGANConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = config or IPCGANConfig()
        self.stem = nn.Sequential(nn.Conv2d(3, c.d_channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
        layers, width = [], c.d_channels + c.num_groups
        for i in range(1, c.d_layers):
            out = c.d_channels * min(2**i, 8)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, inplace=True)]
            width = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 3, 1, 1)

    def forward(self, images: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        _check_images(images, c.resolution)
        x = self.stem(images)
        cond = condition_maps(groups.to(images.device), c.num_groups, x.shape[-1], x.dtype)
        return self.head(self.body(torch.cat([x, cond], dim=1)))


class ProjectedDiscriminator(nn.Module):
    """(image, group) -> list of LSGAN score maps, one per feature scale, on frozen MobileNetV2.

    "Projected GANs Converge Faster" (Sauer et al., 2021): a discriminator that works on the
    features of a frozen ImageNet network learns far faster from little data and compute than one
    from pixels, because it starts from edges, textures and parts instead of learning them.
    Here: the bundled MobileNetV2 (``faceage.models.mobilenet``) at the input resolution, tapped at
    1/4, 1/8 and 1/16 (24, 32 and 96 channels); each tap goes through a fixed random 1x1
    cross-channel mixing (the paper's CCM) and a small trainable head (conv, stride-2 conv) that
    ends in a patch of scores. The group enters by projection ("cGANs with Projection
    Discriminator", Miyato & Koyama, 2018): score = head(h) + <embed(group), h> per position.

    The backbone and the CCM stay frozen (``trainable_parameters`` excludes them) and the backbone in
    eval mode. ``features`` and ``score`` split the forward pass, so a batch of real faces is run
    through the backbone once and scored under several conditions.
    """

    TAPS = (3, 6, 13)  # MobileNetV2 feature indices ending at 1/4, 1/8, 1/16 resolution

    def __init__(self, config: IPCGANConfig | None = None, backbone: nn.Module | None = None) -> None:
        super().__init__()
        from faceage.models.mobilenet import load_mobilenet_v2

        self.cfg = c = config or IPCGANConfig(d_type="projected")
        net = backbone if backbone is not None else load_mobilenet_v2()
        features = cast(nn.Sequential, net.features)
        self.backbone = cast(nn.Sequential, features[: max(self.TAPS) + 1]).eval().requires_grad_(False)
        widths = [self.backbone[i].conv[-1].num_features for i in self.TAPS]  # type: ignore[index, union-attr]
        mix = c.d_channels
        generator = torch.Generator().manual_seed(0)
        self.ccm = nn.ModuleList()
        for w in widths:
            conv = nn.Conv2d(w, mix, 1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / w**0.5)
            self.ccm.append(conv.requires_grad_(False))
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(mix, mix, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(mix, 2 * mix, 4, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
            )
            for _ in widths
        )
        self.scores = nn.ModuleList(nn.Conv2d(2 * mix, 1, 1) for _ in widths)
        self.embed = nn.ModuleList(nn.Linear(c.num_groups, 2 * mix, bias=False) for _ in widths)

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics, always
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.heads, self.scores, self.embed) for p in m.parameters()]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The frozen part: mixed backbone features at each tap."""
        from faceage.models.mobilenet import imagenet_normalize

        _check_images(images, self.cfg.resolution)
        x, feats = imagenet_normalize(images), list[torch.Tensor]()
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.TAPS:
                feats.append(self.ccm[len(feats)](x))
        return feats

    def score(self, feats: list[torch.Tensor], groups: torch.Tensor) -> list[torch.Tensor]:
        """The trainable part: per-scale score maps (B, 1, s, s) of ``features`` under ``groups``."""
        c = self.cfg
        weights = condition_maps(groups.to(feats[0].device), c.num_groups, 1, feats[0].dtype)[:, :, 0, 0]
        out = []
        for f, head, score, embed in zip(feats, self.heads, self.scores, self.embed):
            h = head(f)
            proj = (embed(weights)[:, :, None, None] * h).sum(1, keepdim=True) / h.shape[1] ** 0.5
            out.append(score(h) + proj)
        return out

    def forward(self, images: torch.Tensor, groups: torch.Tensor) -> list[torch.Tensor]:
        return self.score(self.features(images), groups)


def build_discriminator(config: IPCGANConfig) -> nn.Module:
    """The discriminator ``config.d_type`` names."""
    return ProjectedDiscriminator(config) if config.d_type == "projected" else IPCGANDiscriminator(config)
