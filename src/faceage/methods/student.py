"""Method ``student``: the default method distilled into one small network with sub-networks.

The student (``faceage.models.student``, trained by ``faceage train student`` on the prototype
method's own outputs) predicts the shape change as a flow and the luma and colour change on the
warped face. The engine applies both as it does for the prototype method: the flow warps the
photo at its own resolution, the change is pasted on top. Which sub-network runs is either given
(``resolution``, ``ratio``) or picked by ``budget_ms``: the largest whose measured latency on this
machine fits (step S4 of *A StyleGAN-based face age editing method for mobile terminals*,
``faceage.methods.budget``; timings cached per machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceage.age_groups import check_target_age
from faceage.methods.base import AgingMethod, Edit, checked_faces, empty_edit
from faceage.models.colour import luma_chroma_edit
from faceage.models.io import load_flat
from faceage.models.student import FLOW_UNIT, Student, flow_grid

SHIPPED_NAME = "student.safetensors"


class StudentMethod(AgingMethod):
    """Age aligned 256 px faces with a trained ``Student``.

    Args:
        net: the trained student.
        resolution, ratio: the sub-network (None: the full network, or the budget's choice).
        budget_ms: pick the largest sub-network whose batch-1 latency here is within this.
        device: where the network runs.
    """

    name = "student"
    face_size = 256

    def __init__(
        self,
        net: Student,
        resolution: int | None = None,
        ratio: float | None = None,
        budget_ms: float | None = None,
        device: str = "cpu",
        info: dict | None = None,
    ) -> None:
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.info = dict(info or {})
        cfg = net.cfg
        if budget_ms is not None and (resolution is not None or ratio is not None):
            raise ValueError("give a budget or a sub-network (resolution, ratio), not both")
        self.budget = None
        if budget_ms is not None:
            from faceage.methods.budget import LatencyTable, choose_submodel, model_fingerprint

            table = LatencyTable(
                self._time_one, cfg.sub_models(), self.info.get("sha256") or model_fingerprint(net), device
            )
            self.budget = choose_submodel(table.latencies(), float(budget_ms))
            resolution, ratio = self.budget.submodel
        self.resolution = int(resolution or cfg.resolutions[-1])
        self.ratio = float(ratio or 1.0)
        if (self.resolution, self.ratio) not in cfg.sub_models():
            raise ValueError(
                f"no sub-network {self.resolution} px x {self.ratio:g}; the student has "
                f"{', '.join(f'{r}x{c:g}' for r, c in cfg.sub_models())}"
            )

    @classmethod
    def from_weights(cls, path: str | Path | None = None, device: str = "cpu", **options) -> StudentMethod:
        """Load ``path`` (+ its JSON) or the shipped student (checked against the manifest)."""
        from faceage.checksum import sha256_file

        net = load_flat(path, Student, SHIPPED_NAME, "student weights")
        if path is None:
            from faceage.assets import verify_shipped

            path = verify_shipped(SHIPPED_NAME)
        return cls(net, device=device, info={"weights": Path(path).name, "sha256": sha256_file(path)}, **options)

    def describe(self) -> dict:
        out = {"method": self.name, "resolution": self.resolution, "ratio": self.ratio, **self.info}
        if self.budget is not None:
            out["budget_ms"] = self.budget.budget_ms
            out["measured_ms"] = round(self.budget.latency_ms, 2)
            out["budget_met"] = self.budget.fits
        return out

    def _time_one(self, resolution: int, ratio: float) -> None:
        """One batch-1 run of a sub-network, for the latency table."""
        with torch.inference_mode():
            face = torch.zeros(1, 3, self.net.cfg.input_size, self.net.cfg.input_size, device=self.device)
            self.net(face, torch.tensor([30.0]), torch.tensor([70.0]), resolution, ratio)

    @torch.inference_mode()
    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        s = self.face_size
        faces, source_ages = checked_faces(faces, source_ages, s)
        target_age = check_target_age(target_age)
        if not len(faces):
            return empty_edit(s)
        x = torch.from_numpy(faces).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        source = torch.from_numpy(source_ages.astype(np.float32))
        target = torch.full_like(source, float(target_age))
        flow, luma, gain = self.net(x, source, target, self.resolution, self.ratio)
        warped = F.grid_sample(x, flow_grid(flow, s), mode="bilinear", padding_mode="reflection", align_corners=False)
        if luma.shape[-1] != s:  # a smaller sub-network: its change, upsampled, on the full face
            luma = F.interpolate(luma, size=(s, s), mode="bilinear", align_corners=False)
            gain = F.interpolate(gain, size=(s, s), mode="bilinear", align_corners=False)
        edited = luma_chroma_edit(warped, luma, gain, self.net.cfg.chroma_factor)
        pixels = F.interpolate(flow, size=(s, s), mode="bilinear", align_corners=False) * (s / FLOW_UNIT)
        return Edit(
            edited=_to_uint8(edited),
            reconstructed=_to_uint8(warped),
            flow=pixels.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32),
            stats=tuple({"resolution": self.resolution, "ratio": self.ratio} for _ in range(len(faces))),
        )


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
