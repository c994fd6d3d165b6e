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
    flow           (N, S, S, 2) float32 or None: a shape change as a backward displacement in aligned
                   pixels (output pixel q shows the input at q + flow[q]). The engine warps the
                   photo itself with it, at the photo's resolution, before adding the change;
                   ``reconstructed`` must then be the input warped the same way.
    mask           (N, S, S) float32 in [0, 1] or None: where the change may be pasted (None: the
                   engine's default face ellipse).
    warnings       one message or None per face (e.g. a step that was skipped), for the report.
    stats          one dict per face (or empty) of numbers the method measured about its own edit
                   (its size, the strength a target loop chose...), for the benchmark.
    """

    edited: np.ndarray
    reconstructed: np.ndarray | None = None
    flow: np.ndarray | None = None
    mask: np.ndarray | None = None
    warnings: tuple[str | None, ...] = ()
    stats: tuple[dict, ...] = ()


class AgingMethod(abc.ABC):
    """One aging method. Subclasses set ``name`` and ``face_size`` and implement ``edit``."""

    name: str = ""
    face_size: int = 128  # side of the aligned faces ``edit`` expects
    # True: ``edit`` also takes ``landmarks`` (N, 478, 2), the faces' points in aligned pixels
    uses_landmarks: bool = False
    # True: the engine pastes the change keeping each pixel's colour (``paste_delta(keep_gamut=True)``)
    # instead of clipping channels one by one
    keep_gamut: bool = False

    @abc.abstractmethod
    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        """Age ``faces`` (N, S, S, 3) uint8 RGB, whose estimated ages are ``source_ages`` (N,)
        float years, to ``target_age`` years. Deterministic for the same inputs. ``landmarks``
        (N, 478, 2) aligned points are given to methods with ``uses_landmarks``; others ignore them."""

    def describe(self) -> dict:
        """What produced the result, for provenance and reports (weights, sha256, version...)."""
        return {"method": self.name}

    def supported_ages(self) -> tuple[float, float]:
        """The (lowest, highest) target age this method can aim for."""
        return (0.0, 100.0)


def run_edit(
    method: AgingMethod,
    faces: np.ndarray,
    source_ages: np.ndarray,
    target_age: float,
    landmarks: np.ndarray | None = None,
) -> Edit:
    """``method.edit``, handing over ``landmarks`` only to methods that use them (so methods written
    before landmarks existed keep their three-argument ``edit``)."""
    if method.uses_landmarks:
        if landmarks is None:
            raise ValueError(f"method {method.name!r} needs each face's landmarks")
        return method.edit(faces, source_ages, target_age, landmarks=landmarks)
    return method.edit(faces, source_ages, target_age)


def checked_faces(faces: np.ndarray, source_ages: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A method's inputs checked: ``faces`` as (N, size, size, 3) uint8 and ``source_ages`` as (N,)
    float64, else ``ValueError`` saying what was given."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or faces.dtype != np.uint8:
        raise ValueError(f"faces must be (N, {size}, {size}, 3) uint8, got {faces.shape} {faces.dtype}")
    source_ages = np.asarray(source_ages, np.float64).reshape(-1)
    if len(source_ages) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(source_ages)} source ages")
    return faces, source_ages


def empty_edit(size: int) -> Edit:
    """The edit of no faces."""
    empty = np.zeros((0, size, size, 3), np.uint8)
    return Edit(empty, empty.copy())
