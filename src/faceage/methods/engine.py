"""The aging engine every method shares: photo in, photo with every face aged out, plus a report.

photo → detect → align (``FacePipeline``) → estimate each face's age (independent estimator) →
``method.edit`` → paste back → re-align the *output* photo with the same matrices → measure the
age reached and the identity kept (independent estimator and verifier), per face.

The numbers are measured on what the user gets: the aged face is cut again from the output photo,
so blending and paste-back are included (the output file's JPEG compression is not). Nothing is kept on the object
between calls; one ``Ager`` can age any number of photos.

Convention: photos are (H, W, 3) uint8 RGB; boxes are ``x0, y0, x1, y1`` in photo pixels; ages in
years.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from faceage.age_groups import check_target_age
from faceage.errors import NoFaceError
from faceage.imageio import check_rgb
from faceage.methods.base import AgingMethod, Edit, run_edit


@dataclass(frozen=True)
class FaceReport:
    """What happened to one face.

    index         position in the photo's faces (largest first).
    box           detector box (x0, y0, x1, y1) in photo pixels.
    source_age    independent estimate on the aligned input face.
    target_age    the age the method aimed at (the request, clamped to the method's range).
    reached_age   independent estimate on the aged face cut from the output photo; None if not evaluated.
    identity      SFace cosine similarity input vs output face; None if not evaluated.
    same_person   identity at the verifier's standard threshold; None if not evaluated.
    ms            edit (this face's share of the batch) + paste-back time in milliseconds.
    warning       what the method could not do for this face (e.g. a skipped step), or None.
    chroma_detail fine colour detail in the face, output over input (``faceage.eval.guards``): far
                  above 1 means streaks or colour noise the age estimator may read as age; None if
                  not evaluated.
    """

    index: int
    box: tuple[float, ...]
    source_age: float
    target_age: float
    reached_age: float | None
    identity: float | None
    same_person: bool | None
    ms: float
    warning: str | None = None
    chroma_detail: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready, rounded for reading."""
        d = asdict(self)
        d["box"] = [round(v, 1) for v in self.box]
        for key in ("source_age", "target_age", "reached_age", "ms"):
            if d[key] is not None:
                d[key] = round(d[key], 1)
        for key in ("identity", "chroma_detail"):
            if d[key] is not None:
                d[key] = round(d[key], 3)
        return d


@dataclass(frozen=True, eq=False)  # arrays inside
class AgingResult:
    """One photo aged to one target.

    image          (H, W, 3) uint8: the full-resolution photo with every face aged.
    target_age     what the method aimed at (``requested_age`` clamped to its supported range).
    requested_age  what the caller asked for.
    method         the method's name.
    faces          one ``FaceReport`` per face, in ``index`` order.
    aged_crops     (N, S, S, 3) uint8: each aged face re-aligned from ``image`` (for progressions).
    source_crops   (N, S, S, 3) uint8: the same faces aligned from the input photo.
    warning        a sentence when the request was clamped, else None.
    """

    image: np.ndarray
    target_age: float
    requested_age: float
    method: str
    faces: list[FaceReport]
    aged_crops: np.ndarray
    source_crops: np.ndarray
    warning: str | None = None

    def to_dict(self) -> dict:
        """The numbers (no pixels), JSON-ready."""
        return {
            "method": self.method,
            "requested_age": self.requested_age,
            "target_age": self.target_age,
            "warning": self.warning,
            "faces": [face.to_dict() for face in self.faces],
        }


class Ager:
    """Age every face of a photo with one method and report what was reached.

    Args:
        method: an ``AgingMethod`` (see ``faceage.methods.registry.load_method``).
        pipeline: a ``FacePipeline`` at ``method.face_size``; None builds the default one.
        estimator: the independent ``AgeEstimator``; None builds one. Always used: the source
            ages are the method's input.
        verifier: the independent ``IdentityVerifier`` ("sface"); None builds one when ``evaluate``.
        evaluate: measure reached age and identity (costs an age estimate and two embeddings per
            face); False leaves those report fields None.
        max_faces: age at most this many faces per photo (largest first); None for all.
    """

    def __init__(
        self,
        method: AgingMethod,
        pipeline=None,
        estimator=None,
        verifier=None,
        evaluate: bool = True,
        max_faces: int | None = None,
    ) -> None:
        if not isinstance(method, AgingMethod):
            raise TypeError(f"method must be an AgingMethod, got {type(method).__name__}")
        if max_faces is not None and (isinstance(max_faces, bool) or int(max_faces) != max_faces or max_faces < 1):
            raise ValueError(f"max_faces must be a positive integer or None, got {max_faces!r}")
        if pipeline is None:
            from faceage.faces.pipeline import FacePipeline

            pipeline = FacePipeline(size=method.face_size)
        if pipeline.size != method.face_size:
            raise ValueError(
                f"pipeline aligns {pipeline.size} px faces, method {method.name!r} needs {method.face_size} px"
            )
        if estimator is None:
            from faceage.eval.age import AgeEstimator

            estimator = AgeEstimator()
        if verifier is None and evaluate:
            from faceage.eval.identity import IdentityVerifier

            verifier = IdentityVerifier("sface")
        self.method = method
        self.pipeline = pipeline
        self.estimator = estimator
        self.verifier = verifier
        self.evaluate = bool(evaluate)
        self.max_faces = None if max_faces is None else int(max_faces)

    def __repr__(self) -> str:
        return f"Ager(method={self.method.name!r}, evaluate={self.evaluate}, max_faces={self.max_faces})"

    def age(self, rgb: np.ndarray, to: float | Sequence[float] = 70) -> AgingResult | list[AgingResult]:
        """Age every face of ``rgb`` to ``to`` years.

        ``to`` is one age (returns one ``AgingResult``) or a sequence of ages (returns a list, one
        per age, in order; faces are detected, aligned and measured once). Ages outside
        ``method.supported_ages()`` are clamped (``AgingResult.warning`` says so); negative,
        non-finite or above 120 raise ``ValueError``. No face raises ``NoFaceError``.
        """
        many = isinstance(to, (Sequence, np.ndarray)) and not isinstance(to, (str, bytes)) and np.ndim(to) > 0
        if isinstance(to, np.ndarray) and to.ndim == 0:
            to = to.item()
        targets = [check_target_age(t) for t in (np.asarray(to, dtype=object).reshape(-1).tolist() if many else [to])]
        if not targets:
            raise ValueError("to must hold at least one target age")
        rgb = check_rgb(rgb)
        faces = self.pipeline.process(rgb, max_faces=self.max_faces)
        if not faces:
            raise NoFaceError("no face found in the photo")
        crops = np.stack([face.image for face in faces])
        source = np.asarray(self.estimator.estimate_aligned(crops), np.float64)
        source_emb = self.verifier.embed_aligned(crops) if self.evaluate else None
        results = [self._age_to(rgb, faces, crops, source, source_emb, t) for t in targets]
        return results if many else results[0]

    def _age_to(self, rgb, faces, crops, source, source_emb, requested: float) -> AgingResult:
        from faceage.faces.align import warp_face
        from faceage.faces.paste import paste_back, paste_delta, warp_photo

        lo, hi = self.method.supported_ages()
        aimed = float(min(max(requested, lo), hi))
        warning = None
        if aimed != requested:
            warning = (
                f"target age {requested:g} is outside what {self.method.name} can aim for "
                f"({lo:g}-{hi:g}); aimed at {aimed:g}"
            )
        start = time.perf_counter()
        points = None
        if self.method.uses_landmarks:
            if any(face.landmarks is None for face in faces):
                raise ValueError(f"method {self.method.name!r} needs dense landmarks; the face pipeline gave none")
            points = np.stack([face.landmarks for face in faces]).astype(np.float32)
        edit = run_edit(self.method, crops, source, aimed, points)
        _check_edit(edit, crops.shape, self.method.name)
        edit_ms = (time.perf_counter() - start) * 1000.0 / len(faces)

        out = rgb.copy()
        ms = []
        for i, face in enumerate(faces):
            start = time.perf_counter()
            mask = None if edit.mask is None else edit.mask[i]
            feather = None if mask is None else self.method.face_size / 64.0  # a method's mask comes soft
            if edit.flow is not None:
                warp_photo(out, edit.flow[i], face.matrix, out=out)
            if edit.reconstructed is not None:
                paste_delta(
                    out,
                    edit.edited[i],
                    edit.reconstructed[i],
                    face.matrix,
                    mask=mask,
                    feather=feather,
                    out=out,
                    keep_gamut=self.method.keep_gamut,
                )
            else:
                paste_back(out, edit.edited[i], face.matrix, mask=mask, feather=feather, out=out)
            ms.append(edit_ms + (time.perf_counter() - start) * 1000.0)

        size = crops.shape[1]
        views = np.stack([warp_face(out, face.matrix, size) for face in faces])
        n = len(faces)
        reached: list[float | None] = [None] * n
        identity: list[float | None] = [None] * n
        same: list[bool | None] = [None] * n
        chroma: list[float | None] = [None] * n
        if self.evaluate:
            from faceage.eval.guards import chroma_ratio

            chroma = [float(r) for r in chroma_ratio(crops, views)]
            reached = [float(a) for a in self.estimator.estimate_aligned(views)]
            check = self.verifier.verify(source_emb, self.verifier.embed_aligned(views))
            identity = [float(s) for s in np.atleast_1d(check.score)]
            same = [bool(a) for a in np.atleast_1d(check.accepted)]
        reports = [
            FaceReport(
                index=i,
                box=tuple(float(v) for v in face.box),
                source_age=float(source[i]),
                target_age=aimed,
                reached_age=reached[i],
                identity=identity[i],
                same_person=same[i],
                ms=ms[i],
                warning=edit.warnings[i] if i < len(edit.warnings) else None,
                chroma_detail=chroma[i],
            )
            for i, face in enumerate(faces)
        ]
        return AgingResult(out, aimed, requested, self.method.name, reports, views, crops, warning)


def _check_edit(edit: Edit, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(edit, Edit):
        raise TypeError(f"method {name!r} returned {type(edit).__name__}, expected an Edit")
    for what, array in (("edited", edit.edited), ("reconstructed", edit.reconstructed)):
        if array is not None and (array.shape != shape or array.dtype != np.uint8):
            raise ValueError(
                f"method {name!r} returned {what} faces of shape {array.shape} {array.dtype}, expected {shape} uint8"
            )
    if edit.flow is not None and (edit.flow.shape != (*shape[:3], 2) or edit.reconstructed is None):
        raise ValueError(
            f"method {name!r} returned a flow of shape {edit.flow.shape} "
            f"(expected {(*shape[:3], 2)}, with the warped input as reconstructed)"
        )
    if edit.mask is not None and edit.mask.shape != shape[:3]:
        raise ValueError(f"method {name!r} returned masks of shape {edit.mask.shape}, expected {shape[:3]}")
