"""Detect → dense landmarks → FFHQ alignment, composed: one photo in, aligned faces out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from faceage.errors import NoFaceError
from faceage.faces.align import alignment_matrix, transform_points, warp_face
from faceage.faces.detect import DetectedFace, FaceDetector
from faceage.faces.landmarks import LandmarkModel, five_points
from faceage.imageio import check_rgb


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class AlignedFace:
    """One face of a photo, aligned to the FFHQ template.

    Convention:
        image      (size, size, 3) uint8 RGB, the aligned crop.
        matrix     (2, 3) float64, photo → aligned (cv2.warpAffine forward matrix).
        box        (4,) float32 x0, y0, x1, y1 in photo pixels (detector box).
        points5    (5, 2) float32 in **photo** coordinates, ordered left eye, right eye,
                   nose tip, mouth left, mouth right (as seen in the image): the points the
                   alignment used (from the dense landmarks when available, else the detector).
        landmarks  (478, 2) float32 MediaPipe points in **aligned** coordinates, or None.
        score      detector confidence in [0, 1].
        size       side of ``image`` in pixels.
    """

    image: np.ndarray
    matrix: np.ndarray
    box: np.ndarray
    points5: np.ndarray
    landmarks: np.ndarray | None
    score: float
    size: int


class FacePipeline:
    """Detect faces, refine their five points with dense landmarks, align them FFHQ-style.

    Args:
        size: side of the aligned faces (128 default; 256 and 1024 for larger generators).
        detector: a ``FaceDetector``; None builds the default one.
        landmarks: a ``LandmarkModel``; None builds the default one; ``False`` skips dense
            landmarks (alignment then uses the detector's five points, ``landmarks`` is None).
        scale, shift: passed to ``alignment_matrix`` (FFHQ framing by default).

    Convention: see ``AlignedFace``. Each call is independent; nothing is kept between calls.
    """

    def __init__(
        self,
        size: int = 128,
        detector: FaceDetector | None = None,
        landmarks: LandmarkModel | None | Literal[False] = None,
        scale: float = 1.0,
        shift: float = 0.1,
    ) -> None:
        if int(size) != size or size < 16:
            raise ValueError(f"size must be an integer >= 16, got {size}")
        self.size = int(size)
        self.scale = float(scale)
        self.shift = float(shift)
        self.detector = detector if detector is not None else FaceDetector()
        if landmarks is False:
            self.landmarks: LandmarkModel | None = None
        else:
            self.landmarks = landmarks if landmarks is not None else LandmarkModel()

    def process(self, rgb: np.ndarray, max_faces: int | None = None) -> list[AlignedFace]:
        """All faces of an RGB uint8 photo (largest first, at most ``max_faces``), aligned; with dense
        landmarks on, detections the landmarker cannot fit are left out."""
        return self.process_counted(rgb, max_faces)[0]

    def process_counted(self, rgb: np.ndarray, max_faces: int | None = None) -> tuple[list[AlignedFace], int]:
        """``process`` plus how many faces the detector found, so a caller that ages at most
        ``max_faces`` can say how many it left out."""
        rgb = check_rgb(rgb)
        if max_faces is not None and max_faces < 0:
            raise ValueError(f"max_faces must be >= 0, got {max_faces}")
        faces = self.detector.detect(rgb)
        return self._align_all(rgb, faces, max_faces), len(faces)

    def _align_all(self, rgb: np.ndarray, faces: list[DetectedFace], max_faces: int | None) -> list[AlignedFace]:
        if self.landmarks is None:
            return [self.align_detected(rgb, face) for face in faces[:max_faces]]
        # A detection the dense landmarker cannot fit is not a face we can age (a texture, a blob
        # of background); dropping it keeps such "faces" from being aged and pasted into a photo.
        aligned: list[AlignedFace] = []
        for face in faces:
            if max_faces is not None and len(aligned) >= max_faces:
                break
            one = self.align_detected(rgb, face)
            if one.landmarks is not None:
                aligned.append(one)
        return aligned

    def align_one(self, rgb: np.ndarray, name: str = "image") -> AlignedFace:
        """The largest face of ``rgb`` (a dataset crop), or ``NoFaceError`` naming ``name``."""
        rgb = check_rgb(rgb)
        faces = self.detector.detect(rgb)
        if not faces:
            raise NoFaceError(f"{name}: no face found")
        return self.align_detected(rgb, faces[0])

    def align_detected(self, rgb: np.ndarray, face: DetectedFace) -> AlignedFace:
        """Align one already detected face of ``rgb``."""
        dense = self.landmarks.predict(rgb, face) if self.landmarks is not None else None
        # dense landmarks give steadier eye centres (mean of the eye contour, as FFHQ) and mouth
        # corners than the detector's five points
        points5 = five_points(dense) if dense is not None else np.asarray(face.points, np.float32)
        matrix = alignment_matrix(points5, self.size, scale=self.scale, shift=self.shift)
        return AlignedFace(
            image=warp_face(rgb, matrix, self.size),
            matrix=matrix,
            box=np.asarray(face.box, np.float32).copy(),
            points5=points5.astype(np.float32),
            landmarks=transform_points(dense, matrix) if dense is not None else None,
            score=float(face.score),
            size=self.size,
        )
