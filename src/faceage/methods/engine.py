"""The aging engine every method shares: photo in, photo with every face aged out, plus a report.

photo → detect → align (``FacePipeline``) → estimate each face's age (independent estimator), or
take the age the caller knows → ``method.edit`` → paste back → re-align the *output* photo with the
same matrices → measure the age reached and the identity kept (independent estimator and
verifier), per face.

Every age faceage reports (``faceage estimate``, ``faceage age``, the web app, the API) is measured
the same way: the independent estimator on the face aligned at ``MEASURE_SIZE`` pixels
(``face_ages``), whatever size the method itself ages, so one face gets one age everywhere.

The numbers are measured on what the user gets: the aged face is cut again from the output photo,
so blending and paste-back are included (the output file's JPEG compression is not). Nothing is kept on the object
between calls; one ``Ager`` can age any number of photos.

Convention: photos are (H, W, 3) uint8 RGB; boxes are ``x0, y0, x1, y1`` in photo pixels; ages in
years.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from faceage.age_groups import check_target_age
from faceage.errors import FaceageError, NoFaceError
from faceage.imageio import check_rgb
from faceage.methods.base import AgingMethod, Edit, run_edit

# side of the aligned crop every age is measured on (the default method's face size)
MEASURE_SIZE = 256

# ``progress(stage, done, total)``: "faces" once found (done = faces aged, total = faces found),
# then "aging" after each target age (done of total ages)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FaceReport:
    """What happened to one face.

    index         position in the photo's faces (largest first).
    box           detector box (x0, y0, x1, y1) in photo pixels.
    source_age    the age the method started from: ``given_age`` when the caller knew it, else
                  ``estimated_age``.
    target_age    the age the method aimed at (the request, clamped to the method's range).
    reached_age   independent estimate on the aged face cut from the output photo; None if not evaluated.
    identity      SFace cosine similarity input vs output face; None if not evaluated.
    same_person   identity at the verifier's standard threshold; None if not evaluated.
    ms            edit (this face's share of the batch) + paste-back time in milliseconds.
    warning       what the method could not do for this face (e.g. a skipped step), or None.
    chroma_detail fine colour detail in the face, output over input (``faceage.eval.guards``): far
                  above 1 means streaks or colour noise the age estimator may read as age; None if
                  not evaluated.
    estimated_age independent estimate on the aligned input face (``face_ages``).
    given_age     the age at the photo the caller gave for this face, or None.
    source_from   "given" or "estimate": which of the two is ``source_age``.
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
    estimated_age: float | None = None
    given_age: float | None = None
    source_from: str = "estimate"

    def to_dict(self) -> dict:
        """JSON-ready, rounded for reading."""
        d = asdict(self)
        d["box"] = [round(v, 1) for v in self.box]
        for key in ("source_age", "target_age", "reached_age", "ms", "estimated_age", "given_age"):
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
    faces_found    faces the detector found; more than ``len(faces)`` when ``max_faces`` left some
                   out (``faces_note`` says so).
    """

    image: np.ndarray
    target_age: float
    requested_age: float
    method: str
    faces: list[FaceReport]
    aged_crops: np.ndarray
    source_crops: np.ndarray
    warning: str | None = None
    faces_found: int = 0

    @property
    def faces_note(self) -> str | None:
        """'aged the 8 largest of 49 faces' when faces were left out, else None."""
        if self.faces_found <= len(self.faces):
            return None
        return f"aged the {len(self.faces)} largest of {self.faces_found} faces found"

    def to_dict(self) -> dict:
        """The numbers (no pixels), JSON-ready."""
        return {
            "method": self.method,
            "requested_age": self.requested_age,
            "target_age": self.target_age,
            "warning": self.warning,
            "faces_found": max(self.faces_found, len(self.faces)),
            "faces_aged": len(self.faces),
            "faces_note": self.faces_note,
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
            from faceage.eval.age_estimator import AgeEstimator

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

    def age(
        self,
        rgb: np.ndarray,
        to: float | Sequence[float] = 70,
        source_age: float | Sequence[float | None] | None = None,
        progress: Progress | None = None,
    ) -> AgingResult | list[AgingResult]:
        """Age every face of ``rgb`` to ``to`` years.

        ``to`` is one age (returns one ``AgingResult``) or a sequence of ages (returns a list, one
        per age, in order; faces are detected, aligned and measured once). Ages outside
        ``method.supported_ages()`` are clamped (``AgingResult.warning`` says so); negative,
        non-finite or above 120 raise ``ValueError``. No face raises ``NoFaceError``.

        ``source_age`` is the age at the photo when the caller knows it (forensic and family photos
        usually come with one): the method starts from it instead of the estimate. One number is
        every face's; a sequence gives the faces in order (largest first), None entries and faces
        past its end keep the estimate. The report keeps both (``FaceReport.given_age``,
        ``estimated_age``, ``source_from``). ``progress`` is called as the work advances (``Progress``).
        """
        many = isinstance(to, (Sequence, np.ndarray)) and not isinstance(to, (str, bytes)) and np.ndim(to) > 0
        if isinstance(to, np.ndarray) and to.ndim == 0:
            to = to.item()
        targets = [check_target_age(t) for t in (np.asarray(to, dtype=object).reshape(-1).tolist() if many else [to])]
        if not targets:
            raise ValueError("to must hold at least one target age")
        results = list(self.age_each(rgb, targets, source_age, progress))
        return results if many else results[0]

    def age_each(
        self,
        rgb: np.ndarray,
        targets: Sequence[float],
        source_age: float | Sequence[float | None] | None = None,
        progress: Progress | None = None,
        evaluate_first: int | None = None,
    ) -> Iterator[AgingResult]:
        """``age`` to each of ``targets`` in turn, one result at a time (faces found and measured
        once), so a long progression need not hold every whole aged photo at once.
        ``evaluate_first``: measure reached age and identity for the first N targets only (a
        progression shown as pictures needs no measures); None: all, as ``evaluate`` says."""
        targets = [check_target_age(t) for t in targets]
        known_ages(source_age, None)  # a bad age is refused before any work
        rgb = check_rgb(rgb)
        faces, found = self.pipeline.process_counted(rgb, max_faces=self.max_faces)
        if not faces:
            raise NoFaceError("no face found in the photo")
        given = known_ages(source_age, len(faces))
        if progress is not None:
            progress("faces", len(faces), found)
        crops = np.stack([face.image for face in faces])
        estimated = face_ages(self.estimator, rgb, faces, crops)
        source = np.array([e if g is None else g for e, g in zip(estimated, given)], np.float64)
        known = _Known(estimated, given, found)
        source_emb = self.verifier.embed_aligned(crops) if self.evaluate else None
        for done, target in enumerate(targets, 1):
            measure = self.evaluate and (evaluate_first is None or done <= evaluate_first)
            yield self._age_to(rgb, faces, crops, source, source_emb, target, known, measure)
            if progress is not None:
                progress("aging", done, len(targets))

    def _age_to(
        self, rgb, faces, crops, source, source_emb, requested: float, known: _Known, measure: bool
    ) -> AgingResult:
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
        if measure:
            from faceage.eval.guards import chroma_ratio

            chroma = [float(r) for r in chroma_ratio(crops, views)]
            reached = [float(a) for a in face_ages(self.estimator, out, faces, views)]
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
                estimated_age=known.estimated[i],
                given_age=known.given[i],
                source_from="estimate" if known.given[i] is None else "given",
            )
            for i, face in enumerate(faces)
        ]
        return AgingResult(out, aimed, requested, self.method.name, reports, views, crops, warning, known.found)


@dataclass(frozen=True)
class _Known:
    """What the engine knows of a photo's faces before aging them: each face's estimated age, the
    age the caller gave (or None), and how many faces the detector found."""

    estimated: list[float]
    given: list[float | None]
    found: int


def known_ages(source_age: float | Sequence[float | None] | None, faces: int | None) -> list[float | None]:
    """The age at the photo the caller gave for each of ``faces`` faces, checked (0-120 years): one
    number is every face's; a sequence gives the faces in order, None entries and faces past its end
    keep the estimate; more entries than faces is a ``FaceageError``. ``faces`` None only checks."""
    n = 0 if faces is None else faces
    if source_age is None:
        return [None] * n
    if isinstance(source_age, (Sequence, np.ndarray)) and not isinstance(source_age, (str, bytes)):
        ages = [None if a is None else check_target_age(a, "age at the photo") for a in source_age]
        if faces is not None and len(ages) > faces:
            raise FaceageError(f"{len(ages)} ages at the photo given, but {faces} face(s) are aged in the photo")
        return ages + [None] * (n - len(ages))
    return [check_target_age(source_age, "age at the photo")] * n


def face_ages(estimator, rgb: np.ndarray, faces: Sequence, crops: np.ndarray | None = None) -> list[float]:
    """The independent estimate of each face's age, measured on the face aligned at ``MEASURE_SIZE``
    (cut from ``rgb`` with the face's alignment); ``crops`` are the faces already cut at their own
    size, reused when that is ``MEASURE_SIZE``. The one way faceage measures an age."""
    from faceage.faces.align import resize_matrix, warp_face

    if crops is not None and crops.shape[1] == MEASURE_SIZE:
        chips = crops
    else:
        chips = np.stack(
            [warp_face(rgb, resize_matrix(face.matrix, face.size, MEASURE_SIZE), MEASURE_SIZE) for face in faces]
        )
    return [float(a) for a in estimator.estimate_aligned(chips)]


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
