"""Step 7 (``refine=on``): the realism refiner corrects each rendered face.

A small network trained against real faces of the target age (``faceage.models.refiner``,
``faceage train refiner``) sees the rendered face and the input warped alike at its training size,
and returns a bounded luma change and a smooth colour gain. They are computed at that size and
applied to the full 256 px face (the change upsampled, the gain's smoothness kept), only where
the method pastes its change, so hair and background stay the person's. It runs once per face, on
the strength the target loop chose: the loop reads unrefined candidates (refining all five to seven
of them would cost about 100 ms a face on a laptop CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceage.models.colour import luma_chroma_edit
from faceage.models.io import load_flat
from faceage.models.refiner import Refiner

SHIPPED_NAME = "refiner.safetensors"


class RefinerStep:
    """The refiner on aligned uint8 faces of any size (run at the network's own resolution)."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = load_flat(weights, Refiner, SHIPPED_NAME, "refiner weights").to(self.device)

    @torch.inference_mode()
    def __call__(
        self, edited: np.ndarray, warped: np.ndarray, mask: np.ndarray, source: float, target: float
    ) -> np.ndarray:
        """``edited`` (S, S, 3) uint8 refined where ``mask`` (S, S) is on; ``warped`` the input warped alike."""
        s, r = edited.shape[0], self.net.cfg.resolution

        def tensor(image: np.ndarray, side: int) -> torch.Tensor:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(self.device)
            if x.shape[-1] != side:  # the training data's resize (antialiased bilinear)
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            return x / 127.5 - 1

        luma, gain = self.net.residual(
            tensor(edited, r),
            tensor(warped, r),
            torch.tensor([source], dtype=torch.float32),
            torch.tensor([target], dtype=torch.float32),
        )
        if s != r:
            luma = F.interpolate(luma, size=(s, s), mode="bilinear", align_corners=False)
            gain = F.interpolate(gain, size=(s, s), mode="bilinear", align_corners=False)
        weight = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None].to(self.device)
        full = tensor(edited, s)
        out = luma_chroma_edit(full, luma * weight, gain * weight, self.net.cfg.chroma_factor * s // r)
        return ((out[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
