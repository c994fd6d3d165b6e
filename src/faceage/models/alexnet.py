"""AlexNet conv features (the shift-tolerant ImageNet AlexNet of ST-LPIPS), for IPCGAN's identity loss.

IPCGAN (*Face Aging with Identity-Preserved Conditional Generative Adversarial Networks*) keeps identity by matching AlexNet *conv5* features of the input and the aged
face. torchvision's AlexNet weights cannot be had here; the closest bundled network is the AlexNet
that ships, complete, inside ``stlpips-pytorch==0.0.2`` (BSD-2; Ghildyal & Liu, "Shift-tolerant
perceptual similarity metric", 2022): the same five convolutions (64-192-384-256-256 channels,
11/5/3/3/3 kernels), made shift-tolerant by a stride-1 first conv followed by blur-pool
downsampling (a [1, 2, 1] x [1, 2, 1] filter, reflection padding of 2, stride 2) wherever AlexNet
strides or max-pools. Written out here (the package imports torchvision, which is broken next to
the pinned CPU torch) and loaded strictly from the package's weight file.

Input convention: (B, 3, H, W) RGB in [-1, 1] (faceage's torch convention); the network's own
scaling layer (shift/scale constants stored in the weight file) is applied inside ``forward``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from faceage.assets import model_path
from faceage.errors import ModelFileError


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2, depthwise [1,2,1]^2/16 blur, stride 2."""

    filt: torch.Tensor  # a registered buffer

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16.0
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class AlexNetFeatures(NamedTuple):
    relu1: torch.Tensor
    relu2: torch.Tensor
    relu3: torch.Tensor
    relu4: torch.Tensor
    relu5: torch.Tensor  # conv5 after ReLU: IPCGAN's identity features


class ShiftTolerantAlexNet(nn.Module):
    """The five AlexNet conv stages; key layout ``net.sliceK.I`` as in the ST-LPIPS weight file."""

    shift: torch.Tensor  # a registered buffer
    scale: torch.Tensor  # a registered buffer

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        layers = [
            nn.Conv2d(3, 64, 11, 1, 2),
            BlurPool(64),
            nn.ReLU(),  # 0-2: slice1
            nn.MaxPool2d(3, 1),
            BlurPool(64),
            nn.Conv2d(64, 192, 5, 1, 2),
            nn.ReLU(),  # 3-6: slice2
            nn.MaxPool2d(3, 1),
            BlurPool(192),
            nn.Conv2d(192, 384, 3, 1, 1),
            nn.ReLU(),  # 7-10: slice3
            nn.Conv2d(384, 256, 3, 1, 1),
            nn.ReLU(),  # 11-12: slice4
            nn.Conv2d(256, 256, 3, 1, 1),
            nn.ReLU(),  # 13-14: slice5
        ]
        bounds = [(0, 3), (3, 7), (7, 11), (11, 13), (13, 15)]
        self.net = nn.Module()
        for k, (lo, hi) in enumerate(bounds, start=1):
            stage = nn.Sequential()
            for i in range(lo, hi):
                stage.add_module(str(i), layers[i])
            setattr(self.net, f"slice{k}", stage)

    def forward(self, images: torch.Tensor) -> AlexNetFeatures:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        h = (images - self.shift) / self.scale
        outs = []
        for k in range(1, 6):
            h = getattr(self.net, f"slice{k}")(h)
            outs.append(h)
        return AlexNetFeatures(*outs)


def alexnet_weights_path() -> Path:
    return model_path("alexnet_st")


def load_alexnet(path: str | Path | None = None, device: str | torch.device = "cpu") -> ShiftTolerantAlexNet:
    """Build the network and load the ST-LPIPS AlexNet weights strictly (the LPIPS ``lin*`` heads
    in the same file are not part of the feature net and are skipped). Eval mode, frozen."""
    from faceage.models.io import load_state_dict_strict

    path = Path(path) if path is not None else alexnet_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"AlexNet weights are missing: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ModelFileError(f"AlexNet weights {path} are unreadable: {exc}") from None
    state = {
        ("shift" if k == "scaling_layer.shift" else "scale" if k == "scaling_layer.scale" else k): v
        for k, v in state.items()
        if not k.startswith("lin")
    }
    model = ShiftTolerantAlexNet()
    load_state_dict_strict(model, state, str(path))
    return model.to(device).eval().requires_grad_(False)
