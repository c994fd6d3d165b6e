"""The interface every aging method implements: aligned faces in, aged aligned faces out.

A method only edits *aligned* faces (``faceage.faces.pipeline.AlignedFace.image``); detection,
alignment, paste-back, source-age estimation and the per-face report are shared and live in
``faceage.methods.engine``. A new method is one new module with one ``AgingMethod`` subclass,
registered by name in ``faceage.methods.registry``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Edit:
    """A method's output for N aligned faces.

    edited         (N, S, S, 3) uint8 RGB: the faces at the target age.
    reconstructed  (N, S, S, 3) uint8 RGB or None: the method's rendering of the *unchanged* faces.
                   When given, the engine pastes only the change (edited - reconstructed) onto the
                   photo (``faceage.faces.paste.paste_delta``), so detail the model cannot render
                   is kept from the photo; when None the edited faces are blended in directly.
    """

    edited: np.ndarray
    reconstructed: np.ndarray | None = None


class AgingMethod(abc.ABC):
    """One aging method. Subclasses set ``name`` and ``face_size`` and implement ``edit``."""

    name: str = ""
    face_size: int = 128  # side of the aligned faces ``edit`` expects

    @abc.abstractmethod
    def edit(self, faces: np.ndarray, source_ages: np.ndarray, target_age: float) -> Edit:
        """Age ``faces`` (N, S, S, 3) uint8 RGB, whose estimated ages are ``source_ages`` (N,)
        float years, to ``target_age`` years. Deterministic for the same inputs."""

    def describe(self) -> dict:
        """What produced the result, for provenance and reports (weights, sha256, version...)."""
        return {"method": self.name}

    def supported_ages(self) -> tuple[float, float]:
        """The (lowest, highest) target age this method can aim for."""
        return (0.0, 100.0)
