"""What aging results become for people: their provenance, and the frames of a progression.

One builder for ``faceage age`` and the web app, so an aged photo, a strip or a GIF carries the same
provenance and the same labels whichever interface made it. ``results`` are the engine's
``AgingResult``s of one photo, one per target age, in order.

Importing this module is cheap (``faceage --help`` imports it): numpy, Pillow and OpenCV load with
the first output made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class _Face(Protocol):
    @property
    def source_age(self) -> float: ...


class AgingResult(Protocol):
    """What this module reads of ``faceage.methods.engine.AgingResult`` (so outputs need not import
    the engine): the aged photo, the age aimed at, each face's source age and aligned crops."""

    @property
    def image(self) -> np.ndarray: ...

    @property
    def target_age(self) -> float: ...

    @property
    def faces(self) -> Sequence[_Face]: ...

    @property
    def aged_crops(self) -> np.ndarray: ...

    @property
    def source_crops(self) -> np.ndarray: ...


def age_label(age: float) -> str:
    """70.0 -> '70', 42.54 -> '42.5', -0.0 -> '0' (for file names and labels: one decimal at most)."""
    from faceage.age_groups import plain_age

    return f"{plain_age(age):g}"


def result_provenance(info: dict, results: Sequence[AgingResult], face: int | None = None) -> dict[str, str]:
    """Provenance of an output made from ``results``: one result's photo, or a progression of several.

    ``info`` is the method's ``describe()``; ``face`` limits the source ages to that face (an output
    that shows only it), None keeps every face of the photo.
    """
    from faceage.outputs.provenance import provenance_metadata

    faces = list(results[0].faces)
    if face is not None:
        faces = faces[face : face + 1]
    sources = [report.source_age for report in faces]
    targets = [result.target_age for result in results]
    # which source ages the caller gave (the known age at the photo) and which were estimated
    kinds = [getattr(report, "source_from", "estimate") for report in faces]
    extra = {"source_ages_from": ", ".join(kinds)} if "given" in kinds else None
    return provenance_metadata(info, sources, targets[0] if len(targets) == 1 else targets, extra)


def progression_frames(
    results: Sequence[AgingResult], photo: np.ndarray | None = None, face: int | None = None, with_source: bool = True
) -> tuple[list[np.ndarray], list[str]]:
    """(frames, labels) of a progression, one frame per result labelled with the age aimed at.

    ``face`` None: the whole aged photos, after ``photo`` itself; an index: that face's aligned crop
    re-cut from each aged photo, after its crop from the input. ``with_source`` False leaves out the
    first frame (the input).
    """
    ages = [age_label(result.target_age) for result in results]  # what was aimed at, after clamping
    sources = [report.source_age for report in results[0].faces]
    if face is None:
        if photo is None:
            raise ValueError("a progression of whole photos needs the input photo")
        frames = [result.image for result in results]
        first, label = photo, (f"{sources[0]:.0f} (photo)" if len(sources) == 1 else "photo")
    else:
        frames = [result.aged_crops[face] for result in results]
        first, label = results[0].source_crops[face], f"{sources[face]:.0f} (photo)"
    if not with_source:
        return frames, ages
    return [first, *frames], [label, *ages]


def progression_strip_of(
    info: dict,
    results: Sequence[AgingResult],
    photo: np.ndarray | None = None,
    face: int | None = None,
    with_source: bool = True,
) -> tuple[np.ndarray, dict[str, str]]:
    """A labelled strip of ``progression_frames`` and its provenance (the faces it shows)."""
    from faceage.outputs.progression import progression_strip

    frames, labels = progression_frames(results, photo, face, with_source)
    return progression_strip(frames, labels), result_provenance(info, results, face)
