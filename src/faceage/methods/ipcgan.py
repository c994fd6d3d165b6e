"""Method ``ipcgan`` (*Face Aging with Identity-Preserved Conditional Generative Adversarial Networks*): a conditional generator maps each aligned face to a target age group.

The target age picks its group in the generator's grouping (``faceage.age_groups``). Between two
group centres the condition planes are mixed linearly (an age of 60 with centres 55 and 65 asks
for half of each), so ``--to`` is continuous rather than snapping to a group. The generator is also
run with the face's *own* group (from the estimated source age): that rendering is the
``reconstructed`` face, and the engine pastes only the difference onto the photo, so the photo's
sharpness and everything the generator does not change are kept.

Colour: by default (``colour="smooth"``) every generator output is projected onto "the input's
colour, smoothly rescaled" (``faceage.models.colour.keep_colour``): luminance is edited at full
resolution, colour only by a low-frequency gain on the face's own chroma. A generator cannot then
paint colour streaks or noise, and a grayscale photo stays grayscale. ``colour="free"`` passes the
network's RGB through unchanged (for measuring what the network itself does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceage.age_groups import AgeGrouping, check_target_age, get_grouping
from faceage.methods.base import AgingMethod, Edit, checked_faces, empty_edit
from faceage.models.colour import keep_colour
from faceage.models.ipcgan import IPCGANGenerator

SHIPPED_NAME = "ipcgan_generator.safetensors"
COLOUR_MODES = ("smooth", "free")


def group_weights(ages: np.ndarray, grouping: AgeGrouping) -> np.ndarray:
    """Ages (N,) -> (N, G) float32 condition weights: linear between the two nearest group centres
    (one-hot at a centre, and beyond the first/last centre)."""
    centres = np.asarray(grouping.centres, np.float64)
    ages = np.clip(np.asarray(ages, np.float64).reshape(-1), centres[0], centres[-1])
    hi = np.clip(np.searchsorted(centres, ages, side="left"), 1, len(centres) - 1)
    lo = hi - 1
    t = (ages - centres[lo]) / (centres[hi] - centres[lo])
    out = np.zeros((len(ages), len(centres)), np.float32)
    rows = np.arange(len(ages))
    out[rows, lo] = 1.0 - t
    out[rows, hi] += t
    return out


def to_tensor(faces: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(faces)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) float in [-1, 1] -> (N, S, S, 3) uint8."""
    x = ((images.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


class IPCGANMethod(AgingMethod):
    """Age faces with a trained ``IPCGANGenerator``.

    Args:
        generator: the network (eval mode is set here).
        grouping: the age grouping it was trained with (its ``num_groups`` must match).
        device: where to run.
        info: provenance (weights file, sha256, training summary) returned by ``describe``.
        batch: faces per forward pass.
        colour: "smooth" (luma free, colour only as a smooth gain on the input's; see the module
            docstring) or "free" (the network's RGB as it is).
    """

    name = "ipcgan"
    keep_gamut = True  # a brightening must not desaturate a near-white cheek or colour a gray photo

    def __init__(
        self,
        generator: IPCGANGenerator,
        grouping: AgeGrouping,
        device: str | torch.device = "cpu",
        info: dict | None = None,
        batch: int = 16,
        colour: str = "smooth",
    ) -> None:
        if grouping.num_groups != generator.cfg.num_groups:
            raise ValueError(
                f"grouping {grouping.name} has {grouping.num_groups} groups, the generator {generator.cfg.num_groups}"
            )
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.grouping = grouping
        self.face_size = generator.cfg.resolution
        self.info = dict(info or {})
        self.batch = int(batch)
        if colour not in COLOUR_MODES:
            raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
        self.colour = colour

    @classmethod
    def from_weights(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> IPCGANMethod:
        """Load ``path`` (+ its JSON), or the shipped weights (checked against the manifest) when None."""
        from faceage.models.io import load_flat, read_flat_config

        generator = load_flat(path, IPCGANGenerator, SHIPPED_NAME, "IPCGAN generator weights")
        if path is None:
            from faceage.assets import verify_shipped

            path = verify_shipped(SHIPPED_NAME)
        _, training = read_flat_config(path, "IPCGANGenerator")
        grouping = get_grouping(training.get("grouping", "lifespan"))
        info = {
            "weights": Path(path).name,
            "grouping": grouping.name,
            **{k: training[k] for k in ("kimg", "steps", "sha256") if k in training},
        }
        return cls(generator, grouping, device, info)

    def supported_ages(self) -> tuple[float, float]:
        return (float(self.grouping.centres[0]), float(self.grouping.centres[-1]))

    def describe(self) -> dict:
        return {"method": self.name, **self.info, "colour": self.colour}

    def _render(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        y = self.generator(x, weights.to(self.device))
        return keep_colour(x, y) if self.colour == "smooth" else y

    @torch.inference_mode()
    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        faces, source_ages = checked_faces(faces, source_ages, self.face_size)
        target_age = check_target_age(target_age)
        target = torch.from_numpy(group_weights(np.full(len(faces), float(target_age)), self.grouping))
        source = torch.from_numpy(group_weights(source_ages, self.grouping))
        edited, recon = [], []
        for i in range(0, len(faces), self.batch):
            x = to_tensor(faces[i : i + self.batch], self.device)
            edited.append(to_uint8(self._render(x, target[i : i + self.batch])))
            recon.append(to_uint8(self._render(x, source[i : i + self.batch])))
        if not edited:
            return empty_edit(self.face_size)
        return Edit(np.concatenate(edited), np.concatenate(recon))
