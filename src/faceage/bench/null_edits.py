"""Null edits: methods that change nothing a viewer would call ageing (no change, JPEG re-encode, a
1-px blur). The benchmark calibrates its "moved closer" margins on them, and every guard must score
``Unchanged`` exactly as the unedited inputs.

Convention: faces are (N, S, S, 3) uint8 RGB, aligned FFHQ-style (``faceage.faces``).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.eval.guards import _check
from faceage.methods.base import AgingMethod, Edit


class Unchanged(AgingMethod):
    """Returns its input: the baseline every guard must score exactly."""

    name = "unchanged"

    def __init__(self, face_size: int = 128) -> None:
        self.face_size = int(face_size)

    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        return Edit(np.array(faces, np.uint8, copy=True))


class JpegReencode(Unchanged):
    """Null edit: JPEG re-encode (4:2:0, as most photo tools save)."""

    name = "jpeg"

    def __init__(self, face_size: int = 128, quality: int = 90) -> None:
        super().__init__(face_size)
        self.quality = int(quality)

    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        out = []
        for face in _check(faces):
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
            )
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
            if decoded is None:
                raise RuntimeError(f"OpenCV could not JPEG re-encode a {face.shape} face at quality {self.quality}")
            out.append(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
        return Edit(np.stack(out) if out else np.array(faces, copy=True))


class GaussianBlur(Unchanged):
    """Null edit: Gaussian blur of ``sigma`` pixels."""

    name = "blur"

    def __init__(self, face_size: int = 128, sigma: float = 1.0) -> None:
        super().__init__(face_size)
        self.sigma = float(sigma)

    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        out = [cv2.GaussianBlur(f, (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT) for f in _check(faces)]
        return Edit(np.stack(out) if out else np.array(faces, copy=True))


def null_edits(face_size: int) -> list[AgingMethod]:
    """The null edits margins are calibrated on: JPEG q=90 and a 1-px Gaussian blur."""
    return [JpegReencode(face_size, 90), GaussianBlur(face_size, 1.0)]
