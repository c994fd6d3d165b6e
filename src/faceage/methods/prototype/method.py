"""``PrototypeMethod``: plan each face once, render it at any strength, let the loop pick one.

Everything that does not depend on the strength (which cells describe the face, its regions, the
colour, detail and texture changes in the face's own frame, the shape's velocity field, beard and
hair) is computed once per face in ``plan``; ``render`` then costs a few array operations and
one warp, so the target loop can try several strengths per face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceage.faces import mesh
from faceage.methods.base import AgingMethod, Edit, checked_faces, empty_edit
from faceage.methods.prototype import beard as beard_step
from faceage.methods.prototype import colour as colour_step
from faceage.methods.prototype import detail as detail_step
from faceage.methods.prototype import hair as hair_step
from faceage.methods.prototype import loop as loop_step
from faceage.methods.prototype import shape as shape_step
from faceage.methods.prototype.regions import RegionFinder
from faceage.models.prototype_frame import (
    LIGHT_GRID,
    MeanFrame,
    classifier_features,
    fine_part,
    from_ycrcb,
    to_ycrcb,
)
from faceage.models.prototypes import ETHNICITIES, GENDERS, POOLED, PrototypeSet, procrustes_to

SHIPPED_NAME = "prototypes.safetensors"
GRAY_SPREAD = 3  # channel spread at or below which a face counts as grayscale
POOR_FIT = 1.5  # x the prototypes' 99.5 % Procrustes residual: the landmark fit is poor
POOR_FOLDS = 0.05  # share of the mean mesh's area flipped in this face: the landmark fit is poor
GENDER_MIN = 0.2  # a gender with less probability is left out of the cell mix
ETHNICITY_SURE = 0.6  # below this the ethnicity-pooled cells are used
EYE_DETAIL_DAMP = 0.7  # share of the sharp detail left out around the eyes (dark rings otherwise)
COLOUR_CAP = 1.0  # strength pushes shape and detail further, never the averaged colour (it paints smudges)


@dataclass(frozen=True, eq=False)
class FacePlan:
    """One face, ready to render at any strength (see ``PrototypeMethod.render``)."""

    face: np.ndarray  # (S, S, 3) uint8 input
    ycc: np.ndarray  # (S, S, 3) float32 YCrCb input after beard removal and hair greying
    gray: bool
    colour: np.ndarray  # (S, S, 3) YCrCb change at strength 1, masked
    detail: np.ndarray  # (S, S) signed sharp detail change at strength 1, relit, masked
    detail_cap: float  # the strength beyond which the detail change stops growing (rejuvenation: 1,
    # as it only flattens the face's own lines; more would draw them back inverted)
    bands: np.ndarray  # (K, S, S) the face's detail bands (non-age regions inpainted first)
    log_ratio: np.ndarray  # (K, S, S) log band ratios at strength 1, masked
    shape: shape_step.ShapeChange | None  # None: the shape step is skipped (warning says why)
    shape_cap: float  # the strength beyond which the shape stops growing (rejuvenation: 1, the
    # change is already multiplied by ``shape.younger_gain``)
    mask: np.ndarray  # (S, S) where the change is pasted, before the warp
    warning: str | None
    source: float = 0.0  # the ages the plan goes between (the refiner is told them)
    target: float = 0.0


class PrototypeMethod(AgingMethod):
    """Age aligned 256 px faces with a ``PrototypeSet``.

    Args:
        prototypes: the built prototypes.
        strength: scales every change (open loop: the strength used, times the calibration;
            closed loop: scales the loop's candidate strengths).
        loop: pick each face's strength with the target loop (``loop.py``); False: open loop.
        shape, detail: the shape step and the sharp signed detail (off: the benchmark's ablation).
        non_age: keep hair and background out of the edit (and inpaint them before the texture
            step); False edits the whole aligned square (the benchmark's ablation).
        hair: grey the hair for targets above ~45. beard: remove facial hair below ~15.
        calibrated: open loop only: apply the stored per-target strength gains.
        refine: correct each rendered face with the realism refiner (``refine.py``); ``refiner``
            is its weights file (None: the shipped one).
        device: where the loop's age regressor runs.
        info: provenance for ``describe``.
    """

    name = "prototype"
    face_size = 256
    uses_landmarks = True

    def __init__(
        self,
        prototypes: PrototypeSet,
        strength: float = 1.0,
        loop: bool = True,
        shape: bool = True,
        detail: bool = True,
        non_age: bool = True,
        hair: bool = True,
        beard: bool = True,
        calibrated: bool = True,
        refine: bool = False,
        refiner: str | Path | None = None,
        device: str = "cpu",
        info: dict | None = None,
    ) -> None:
        if not np.isfinite(strength) or not 0.0 <= strength <= 3.0:
            raise ValueError(f"strength must be between 0 and 3, got {strength}")
        self.p = prototypes
        self.face_size = prototypes.size
        self.strength = float(strength)
        self.loop = bool(loop)
        self.use_shape = bool(shape)
        self.use_detail = bool(detail) and prototypes.has_detail
        self.non_age = bool(non_age)
        self.hair = bool(hair)
        self.beard = bool(beard)
        self.calibrated = bool(calibrated)
        self.info = dict(info or {})
        s = self.face_size
        self.light_frame = MeanFrame(prototypes.mean_shape, prototypes.triangles, s, LIGHT_GRID)
        self.mean_control = mesh.control_points(prototypes.mean_shape, s)
        self.region = prototypes.region if non_age else np.ones_like(prototypes.region)
        self.relighter = colour_step.Relighter(prototypes, self.region)
        self.energy_region = cv2.resize(self.region, prototypes.energy.shape[-2:][::-1], interpolation=cv2.INTER_AREA)
        self.regions = RegionFinder()
        self.judges = loop_step.OwnJudges(device) if self.loop else None
        self.refiner = None
        if refine:
            from faceage.methods.prototype.refine import RefinerStep

            self.refiner = RefinerStep(refiner, device)

    @classmethod
    def from_weights(cls, path: str | Path | None = None, device: str = "cpu", **options) -> PrototypeMethod:
        """Load ``path`` (+ its JSON) or the shipped prototypes (checked against the manifest)."""
        if path is None:
            from faceage.assets import verify_shipped

            path = verify_shipped(SHIPPED_NAME)
            verify_shipped(Path(SHIPPED_NAME).with_suffix(".json").name)
        protos = PrototypeSet.load(path)
        info = {
            "weights": Path(path).name,
            "faces": protos.info.get("faces"),
            "cells": len(protos.info.get("cells", [])),
        }
        return cls(protos, device=device, info=info, **options)

    def describe(self) -> dict:
        return {
            "method": self.name,
            "strength": self.strength,
            "loop": self.loop,
            "shape": self.use_shape,
            "detail": self.use_detail,
            "non_age": self.non_age,
            "refine": self.refiner is not None,
            **self.info,
        }

    def supported_ages(self) -> tuple[float, float]:
        return (0.0, 100.0)

    # --- public ----------------------------------------------------------------------------

    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        faces, source_ages = checked_faces(faces, source_ages, self.face_size)
        if landmarks is None:
            raise ValueError("the prototype method needs each face's 478 landmarks (aligned coordinates)")
        landmarks = np.asarray(landmarks, np.float32)
        if landmarks.shape != (len(faces), 478, 2):
            raise ValueError(f"landmarks must be ({len(faces)}, 478, 2), got {landmarks.shape}")
        if not np.isfinite(target_age):
            raise ValueError(f"target age must be a finite number, got {target_age}")
        if not len(faces):
            return empty_edit(self.face_size)
        results = [self.edit_one(f, lm, float(a), float(target_age)) for f, lm, a in zip(faces, landmarks, source_ages)]
        return Edit(
            edited=np.stack([r[0] for r in results]),
            reconstructed=np.stack([r[1] for r in results]),
            flow=np.stack([r[2] for r in results]),
            mask=np.stack([r[3] for r in results]),
            warnings=tuple(r[4] for r in results),
            stats=tuple(r[5] for r in results),
        )

    def edit_one(
        self, face: np.ndarray, landmarks: np.ndarray, source: float, target: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None, dict]:
        """One face: (edited, reconstructed, flow, mask, warning, stats)."""
        plan = self.plan(face, landmarks, source, target)
        warning = plan.warning
        stats: dict = {"shape_skipped": plan.shape is None}
        if self.loop and self.strength > 0 and abs(target - source) > 0.5:
            assert self.judges is not None
            chosen = loop_step.choose_strength(
                lambda a: self.render(plan, a)[0], face, source, target, self.judges, self.strength
            )
            strength = chosen.strength
            stats.update(
                loop_strength=round(strength, 3),
                loop_age=round(chosen.own_age, 2),
                loop_reached=chosen.reached,
                loop_identity=None if chosen.identity is None else round(chosen.identity, 3),
                loop_limited_by_identity=chosen.limited_by_identity,
                loop_offset=round(chosen.offset, 2),
                loop_limited_by_guard=chosen.limited_by_guard,
            )
            if not chosen.reached:
                note = f"target {target:g} out of reach within the limits: own regressor reads {chosen.own_age:.1f}" + (
                    " (identity floor)" if chosen.limited_by_identity else ""
                )
                warning = note if warning is None else f"{warning}; {note}"
        else:
            strength = self.strength * (self.p.gain(target) if self.calibrated and not self.loop else 1.0)
        edited, reconstructed, flow, mask = self.render(plan, strength, refine=True)
        stats["strength"] = round(float(strength), 3)
        stats["shape_share"] = (
            0.0 if plan.shape is None else round(plan.shape.displacement_share(min(strength, plan.shape_cap)), 4)
        )
        inside = mask > 0.5
        luma_in = to_ycrcb(reconstructed)[..., 0]
        luma_out = to_ycrcb(edited)[..., 0]
        stats["luma_change"] = round(float(np.abs(luma_out - luma_in)[inside].mean()) if inside.any() else 0.0, 3)
        return edited, reconstructed, flow, mask, warning, stats

    # --- plan and render ---------------------------------------------------------------------

    def mix(self, light: np.ndarray, landmarks: np.ndarray) -> list[tuple[int, int, float]]:
        """[(gender, ethnicity cell column, weight)]: which cells describe the face whose
        shape-normalised sample (light lattice, YCrCb) is ``light``."""
        pg, pe = self._probabilities(light, landmarks)
        genders = [(g, float(w)) for g, w in enumerate(pg) if w >= GENDER_MIN]
        total = sum(w for _, w in genders)
        top = int(pe.argmax())
        column = top if pe[top] >= ETHNICITY_SURE else POOLED
        return [(g, column, w / total) for g, w in genders]

    def classify(self, face: np.ndarray, landmarks: np.ndarray) -> dict:
        """Gender and ethnicity probabilities the method sees in ``face`` (for reports and tests)."""
        pg, pe = self._probabilities(self.light_frame.sample(to_ycrcb(face), landmarks), landmarks)
        return {
            "gender": dict(zip(GENDERS, pg.round(3).tolist())),
            "ethnicity": dict(zip(ETHNICITIES, pe.round(3).tolist())),
        }

    def plan(self, face: np.ndarray, landmarks: np.ndarray, source: float, target: float) -> FacePlan:
        """Everything about one face that does not depend on the strength."""
        s = self.face_size
        gray = _is_gray(face)
        ycc = to_ycrcb(face)
        light = self.light_frame.sample(ycc, landmarks)  # shape-normalised: classifier and colour
        mix = self.mix(light, landmarks)
        regions = self.regions.find(face, landmarks, self.non_age, self.hair, shape_step.cranium_ratio(source))
        control = mesh.control_points(landmarks, s)
        # where each face pixel lies in the mean frame (reads the prototypes in the face's frame)
        to_mean = mesh.upsample_map(
            mesh.Barycentric(control, shape_step.FLOW_GRID, s).interpolate(self.mean_control), s
        )

        warning = None
        change = None
        if self.use_shape:
            residual = self._fit_residual(landmarks, source, mix)
            if residual > POOR_FIT * self.p.fit_limit or self.light_frame.fold_fraction(landmarks) > POOR_FOLDS:
                warning = f"landmark fit is poor (residual {residual:.1f} px): shape left unchanged"
            else:
                delta = self.p.shape_at(target, mix) - self.p.shape_at(source, mix)
                change = shape_step.younger_shape_change(
                    landmarks, delta, shape_step.cranium_scale(source, target), s, source, target
                )

        edit_w = regions.edit
        d_colour = _to_face(colour_step.colour_change(self.relighter, light, source, target, mix, self.region), to_mean)
        d_colour *= edit_w[..., None]
        d_colour[..., 1:] *= 0.0 if gray else colour_step.chroma_scale(ycc, edit_w)
        d_detail = np.zeros((s, s), np.float32)
        if self.use_detail:
            fine = _to_face(self.p.detail_at(target, mix) - self.p.detail_at(source, mix), to_mean)
            proto_luma = _to_face(np.ascontiguousarray(self.p.colour_at(source, mix)[..., 0]), to_mean)
            damp = 1.0 - EYE_DETAIL_DAMP * regions.eyes
            d_detail = fine * detail_step.relight_gain(ycc[..., 0], proto_luma) * edit_w * damp
            if target < source:
                d_detail = detail_step.only_smoothing(d_detail, fine_part(ycc[..., 0], s))
        ratio = detail_step.energy_ratio(self.p, source, target, mix, self.energy_region)
        log_ratio = detail_step.log_ratio(np.stack([_to_face(r, to_mean, fill=1.0) for r in ratio])) * edit_w[None]

        base = ycc.copy()
        male = sum(w for g, _, w in mix if GENDERS[g] == "male")
        amount = beard_step.removal_amount(source, target, male) if self.beard else 0.0
        beard_w: np.ndarray = np.zeros((s, s), np.float32)
        if amount > 0:
            beard_w = (beard_step.beard_mask(ycc, regions.lower, regions.skin, landmarks) * amount).astype(np.float32)
            skin = regions.edit * (1.0 - regions.lower * 0.5)  # the face's skin, cheeks more than chin
            base = beard_step.remove_beard(base, beard_w / max(amount, 1e-6), amount, skin)
        share = hair_step.grey_share(source, target) if self.hair else 0.0
        if share > 0:
            base = hair_step.grey_strands(base, regions.hair, share)
        darken = hair_step.darkening_share(source, target) if self.hair else 0.0
        if darken > 0:
            base = hair_step.darken_grey(base, regions.hair, darken)
        luma = base[..., 0]
        if self.non_age and regions.nonage.any():
            # Telea fills hair/background before the bands are taken, so their edges are not
            # amplified into the face; the original pixels come back through the mask
            filled = cv2.inpaint(
                np.clip(luma, 0, 255).astype(np.uint8), regions.nonage.astype(np.uint8), 3.0, cv2.INPAINT_TELEA
            ).astype(np.float32)
            luma = np.where(regions.nonage, filled, luma)
        if gray:
            base[..., 1:] = ycc[..., 1:]
        mask = np.maximum(edit_w, regions.hair * (share > 0 or darken > 0))
        mask = np.maximum(mask, np.clip(beard_w * 2.0, 0.0, 1.0))
        return FacePlan(
            face=face,
            ycc=base,
            gray=gray,
            colour=d_colour.astype(np.float32),
            detail=d_detail.astype(np.float32),
            detail_cap=1.0 if target < source else np.inf,
            bands=detail_step.bands_of(luma),
            log_ratio=log_ratio,
            shape=change,
            shape_cap=1.0 if target < source else np.inf,
            mask=mask.astype(np.float32),
            warning=warning,
            source=source,
            target=target,
        )

    def render(
        self, plan: FacePlan, strength: float, refine: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(edited, reconstructed, flow, mask) of a planned face at ``strength``; ``refine``: then
        corrected by the refiner (when the method has one)."""
        s = self.face_size
        a_colour = min(strength, COLOUR_CAP)
        out = plan.ycc.copy()
        out += plan.colour * a_colour
        detail = plan.detail * min(strength, plan.detail_cap)
        out[..., 0] += detail + detail_step.texture_change(plan.bands, plan.log_ratio, strength)
        if plan.gray:
            out[..., 1:] = plan.ycc[..., 1:]
        shape_strength = min(strength, plan.shape_cap)
        backward = plan.shape.backward(shape_strength) if plan.shape is not None else mesh.identity_map(s)
        warped = mesh.remap(out, backward)
        edited = from_ycrcb(warped)
        if plan.gray:
            edited = np.repeat(edited[..., :1], 3, axis=2)
        reconstructed = mesh.remap(plan.face, backward)
        mask = np.clip(mesh.remap(plan.mask, backward), 0.0, 1.0)
        if refine and self.refiner is not None:
            edited = self.refiner(edited, reconstructed, mask, plan.source, plan.target)
            if plan.gray:
                edited = np.repeat(edited[..., :1], 3, axis=2)
        flow = (backward - mesh.identity_map(s)).astype(np.float32)
        return edited, reconstructed, flow, mask.astype(np.float32)

    # --- helpers -----------------------------------------------------------------------------

    def _probabilities(self, light: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gender (2,) and ethnicity (5,) probabilities of a face from its shape-normalised sample."""
        pg, pe = self.p.classify(classifier_features(light, landmarks, self.p.mean_shape, self.face_size)[None])
        return pg[0], pe[0]

    def _fit_residual(self, landmarks: np.ndarray, source: float, mix: list) -> float:
        """RMS distance (px) of the face's mesh points from the source prototype after a
        similarity fit: large when the landmarker failed."""
        ref = self.p.shape_at(source, mix)[: mesh.MESH_POINTS].astype(np.float64)
        fitted = procrustes_to(landmarks[None, : mesh.MESH_POINTS].astype(np.float64), ref)[0]
        return float(np.sqrt(((fitted - ref) ** 2).sum(axis=1).mean()))


def _is_gray(rgb: np.ndarray) -> bool:
    x = rgb.astype(np.int16)
    return int(max(np.abs(x[..., 0] - x[..., 1]).max(), np.abs(x[..., 1] - x[..., 2]).max())) <= GRAY_SPREAD


def _to_face(image: np.ndarray, to_mean: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """A mean-frame lattice image (any size) read at the face's pixels."""
    size = to_mean.shape[0]
    grid = image.shape[0]
    lattice = (to_mean + 0.5) * (grid / size) - 0.5
    return cv2.remap(
        np.ascontiguousarray(image, np.float32),
        lattice[..., 0],
        lattice[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
