"""Method ``prototype``: move a face along the difference between two age prototypes.

The classical route to believable aging without a GAN (Burt & Perrett 1995; Rowland & Perrett
1995; Tiddeman, Burt & Perrett 2001; Kemelmacher-Shlizerman, Suwajanakorn & Seitz, CVPR 2014):

1. **shape** - the prototype landmarks' change from the source age to the target age is added
   to the face's own landmarks; a piecewise-linear mesh warp (with a head ring beyond the face
   oval, so a child's cranium grows and the lower face shortens) carries the pixels. The engine
   applies the same warp to the photo at its own resolution (``Edit.flow``). A warp whose
   Jacobian comes near folding is weakened, and a poor landmark fit skips the shape step with a
   warning.
2. **colour** - the target prototype minus the source prototype, each *relit like this face*
   (projected on the cell's low-rank lighting basis), low-passed, stepped through every bin
   between the two ages, added in YCrCb. A grayscale face only gets the luminance change.
3. **texture** - each detail band of the face is scaled by the target/source ratio of the
   prototypes' band energies (smoothed, clamped): lines appear where older faces have them and
   fade for rejuvenation.
4. eyes and the inner mouth are protected; hair greys above ~50 inside the hair mask;
   hair and background (``non_age``) are kept out of the edit, and inpainted (Telea) before the
   band decomposition so their edges are not sharpened into the face, as GLS-Age does with its
   non-age regions.

The cells used are picked by a small gender/ethnicity classifier stored with the prototypes, and
the strength at each target can be calibrated with faceage's own age regressor
(``calibrate``): averages under-age (Burt & Perrett saw the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceage.faces import mesh
from faceage.faces.segment import PersonSegmenter
from faceage.faces.texture import decompose
from faceage.methods.base import AgingMethod, Edit
from faceage.models.prototype_frame import (
    COLOUR_GRID,
    ENERGY_GRID,
    LIGHT_GRID,
    MeanFrame,
    classifier_features,
    from_ycrcb,
    to_ycrcb,
)
from faceage.models.prototypes import ETHNICITIES, GENDERS, POOLED, PrototypeSet, procrustes_to

SHIPPED_NAME = "prototypes.safetensors"
FLOW_GRID = 128  # lattice of the shape warp (upsampled to the face, and to the photo by the engine)
MIN_JACOBIAN = 0.2  # a warp that shrinks any area below this is weakened
RATIO_RANGE = (0.6, 1.8)  # texture energy ratios are clamped to this
ENERGY_FLOOR = 0.3  # grey levels added to band energies before the ratio (flat skin stays flat)
GRAY_SPREAD = 3  # channel spread at or below which a face counts as grayscale
COLOUR_GAIN_CAP = 1.25  # calibration may push the shape further; colour only this far
HAIR_REACH = 1.6  # hair is greyed within this multiple of the face oval's size around its centre,
HAIR_SURE = 1.35  # all of it within this one, further out only where it looks like hair
TEXTURE_GAIN_CAP = 1.5  # and texture this far (amplified freckles read as dirt, not age)


@dataclass(frozen=True)
class FaceEdit:
    """One face's result before stacking."""

    edited: np.ndarray
    reconstructed: np.ndarray
    flow: np.ndarray
    mask: np.ndarray
    warning: str | None


# Head height above the eyes relative to the face below them, by age: the cranium is near adult
# size early while the face keeps growing into the late teens (approximate growth norms after
# Farkas, "Anthropometry of the Head and Face", 1994). The landmarks stop at the hairline, so
# this drives the head ring above the eyes: a child's cranium grows, an adult's shrinks back.
CRANIUM_AGES = (0.0, 1.0, 3.0, 6.0, 10.0, 14.0, 18.0, 120.0)
CRANIUM_RATIO = (1.50, 1.45, 1.32, 1.20, 1.12, 1.05, 1.0, 1.0)


def cranium_scale(source: float, target: float) -> float:
    """How much the head above the eyes scales (about the eyes) from ``source`` to ``target``."""
    return float(np.interp(target, CRANIUM_AGES, CRANIUM_RATIO) / np.interp(source, CRANIUM_AGES, CRANIUM_RATIO))


def scale_cranium(control: np.ndarray, landmarks: np.ndarray, factor: float, size: int) -> np.ndarray:
    """Control points with the head ring and the forehead scaled by ``factor`` about the eye
    line, fading in above the brows (the face below the eyes is left to the prototypes)."""
    from faceage.faces.landmarks import LEFT_EYE_CONTOUR6, RIGHT_EYE_CONTOUR6

    if abs(factor - 1.0) < 1e-3:
        return control
    out = control.copy()
    eyes = landmarks[list(LEFT_EYE_CONTOUR6 + RIGHT_EYE_CONTOUR6)].mean(axis=0)
    chin = landmarks[152]
    down = (chin - eyes) / max(float(np.linalg.norm(chin - eyes)), 1e-6)
    n = mesh.MESH_POINTS + len(mesh.oval_indices())  # mesh and ring; border anchors stay
    rel = out[:n] - eyes
    height = -(rel @ down)  # distance above the eye line
    face_height = float(np.linalg.norm(chin - eyes))
    weight = np.clip(height / (0.5 * face_height), 0.0, 1.0)[:, None]
    out[:n] = eyes + rel * (1.0 + (factor - 1.0) * weight)
    out[:n] = np.clip(out[:n], 1.0, size - 2.0)
    return out


def _age_chain(source: float, target: float, centres: np.ndarray) -> list[float]:
    """source, every bin centre strictly between, target: large jumps go bin by bin."""
    lo, hi = min(source, target), max(source, target)
    inner = [float(c) for c in centres if lo < c < hi]
    return [source] + (inner if target >= source else inner[::-1]) + [target]


def _is_gray(rgb: np.ndarray) -> bool:
    x = rgb.astype(np.int16)
    return int(max(np.abs(x[..., 0] - x[..., 1]).max(), np.abs(x[..., 1] - x[..., 2]).max())) <= GRAY_SPREAD


def _fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(p * 16).astype(np.int32) for p in polygons], 1, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32)


def _hair_like(rgb: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much a pixel looks like hair rather than what tight crops pad
    the square with (a blurred mirror of the face, which the person segmenter calls hair too):
    hair differs in colour from the face's skin and has strand texture; padding is smooth."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    if skin.sum() < 20:
        unlike = np.ones(rgb.shape[:2], np.float32)
    else:
        distance = np.sqrt(((lab - np.median(lab[skin], axis=0)) ** 2).sum(axis=2))
        unlike = np.clip((distance - 15.0) / 25.0, 0.0, 1.0)
    luma = lab[..., 0]
    scale = rgb.shape[0] / 256.0
    detail = cv2.GaussianBlur(np.abs(luma - cv2.GaussianBlur(luma, (0, 0), 1.5 * scale)), (0, 0), 4.0 * scale)
    textured = np.clip((detail - 1.5) / 2.5, 0.0, 1.0)
    return (unlike * textured).astype(np.float32)


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=sigma), 0.0, 1.0)


class PrototypeMethod(AgingMethod):
    """Age aligned 256 px faces with a ``PrototypeSet``.

    Args:
        prototypes: the built prototypes.
        strength: scales every change (1 = the prototypes' difference, times the calibration).
        non_age: keep hair and background out of the edit (and inpaint them before the texture
            step); False edits the whole aligned square (the benchmark's ablation).
        hair: grey the hair for targets above ~50.
        calibrated: apply the stored per-target strength gains.
        info: provenance for ``describe``.
    """

    name = "prototype"
    face_size = 256
    uses_landmarks = True

    def __init__(
        self,
        prototypes: PrototypeSet,
        strength: float = 1.0,
        non_age: bool = True,
        hair: bool = True,
        calibrated: bool = True,
        info: dict | None = None,
    ) -> None:
        if not np.isfinite(strength) or not 0.0 <= strength <= 3.0:
            raise ValueError(f"strength must be between 0 and 3, got {strength}")
        self.p = prototypes
        self.face_size = prototypes.size
        self.strength = float(strength)
        self.non_age = bool(non_age)
        self.hair = bool(hair)
        self.calibrated = bool(calibrated)
        self.info = dict(info or {})
        s = self.face_size
        self.colour_frame = MeanFrame(prototypes.mean_shape, prototypes.triangles, s, COLOUR_GRID)
        self.light_frame = MeanFrame(prototypes.mean_shape, prototypes.triangles, s, LIGHT_GRID)
        self.mean_control = mesh.control_points(prototypes.mean_shape, s)
        self.region = prototypes.region if non_age else np.ones_like(prototypes.region)
        self.light_region = cv2.resize(self.region, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA)
        self.energy_region = cv2.resize(self.region, (ENERGY_GRID, ENERGY_GRID), interpolation=cv2.INTER_AREA)
        # each cell's mean at the lighting lattice, and its basis as (R, l*l*3) rows
        self.light_mean = np.stack(
            [cv2.resize(c, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA) for c in prototypes.colour]
        )
        self.light_basis = prototypes.light.reshape(prototypes.light.shape[0], prototypes.light.shape[1], -1)
        self._segmenter: PersonSegmenter | None = None

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
        return cls(protos, info=info, **options)

    def describe(self) -> dict:
        return {"method": self.name, "strength": self.strength, "non_age": self.non_age, **self.info}

    def supported_ages(self) -> tuple[float, float]:
        return (0.0, 100.0)

    # --- public ----------------------------------------------------------------------------

    def edit(
        self, faces: np.ndarray, source_ages: np.ndarray, target_age: float, landmarks: np.ndarray | None = None
    ) -> Edit:
        faces = np.asarray(faces)
        s = self.face_size
        if faces.ndim != 4 or faces.shape[1:] != (s, s, 3) or faces.dtype != np.uint8:
            raise ValueError(f"faces must be (N, {s}, {s}, 3) uint8, got {faces.shape} {faces.dtype}")
        source_ages = np.asarray(source_ages, np.float64).reshape(-1)
        if len(source_ages) != len(faces):
            raise ValueError(f"{len(faces)} faces but {len(source_ages)} source ages")
        if landmarks is None:
            raise ValueError("the prototype method needs each face's 478 landmarks (aligned coordinates)")
        landmarks = np.asarray(landmarks, np.float32)
        if landmarks.shape != (len(faces), 478, 2):
            raise ValueError(f"landmarks must be ({len(faces)}, 478, 2), got {landmarks.shape}")
        if not np.isfinite(target_age):
            raise ValueError(f"target age must be a finite number, got {target_age}")
        results = [self.edit_one(f, lm, float(a), float(target_age)) for f, lm, a in zip(faces, landmarks, source_ages)]
        if not results:
            empty = np.zeros((0, s, s, 3), np.uint8)
            return Edit(empty, empty.copy())
        return Edit(
            edited=np.stack([r.edited for r in results]),
            reconstructed=np.stack([r.reconstructed for r in results]),
            flow=np.stack([r.flow for r in results]),
            mask=np.stack([r.mask for r in results]),
            warnings=tuple(r.warning for r in results),
        )

    def _probabilities(self, light: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gender (2,) and ethnicity (5,) probabilities of a face from its shape-normalised sample."""
        pg, pe = self.p.classify(classifier_features(light, landmarks, self.p.mean_shape, self.face_size)[None])
        return pg[0], pe[0]

    def mix(self, light: np.ndarray, landmarks: np.ndarray) -> list[tuple[int, int, float]]:
        """[(gender, ethnicity cell column, weight)]: which cells describe the face whose
        shape-normalised sample (light lattice, YCrCb) is ``light``."""
        pg, pe = self._probabilities(light, landmarks)
        genders = [(g, float(w)) for g, w in enumerate(pg) if w >= 0.2]
        total = sum(w for _, w in genders)
        top = int(pe.argmax())
        column = top if pe[top] >= 0.6 else POOLED
        return [(g, column, w / total) for g, w in genders]

    def classify(self, face: np.ndarray, landmarks: np.ndarray) -> dict:
        """Gender and ethnicity probabilities the method sees in ``face`` (for reports and tests)."""
        pg, pe = self._probabilities(self.light_frame.sample(to_ycrcb(face), landmarks), landmarks)
        return {
            "gender": dict(zip(GENDERS, pg.round(3).tolist())),
            "ethnicity": dict(zip(ETHNICITIES, pe.round(3).tolist())),
        }

    def edit_one(self, face: np.ndarray, landmarks: np.ndarray, source: float, target: float) -> FaceEdit:
        """One aligned face (S, S, 3) uint8 with its landmarks, from ``source`` to ``target`` years."""
        s = self.face_size
        gray = _is_gray(face)
        light = self.light_frame.sample(to_ycrcb(face), landmarks)  # shape-normalised: classifier and colour
        mix = self.mix(light, landmarks)
        gain = self.p.gain(target) if self.calibrated else 1.0
        a_shape = self.strength * gain
        a_colour = self.strength * min(gain, COLOUR_GAIN_CAP)

        # 1. shape
        warning = None
        new_lm = landmarks.copy()
        new_control = source_control = mesh.control_points(landmarks, s)
        mapping = mesh.identity_map(s)
        residual = self._fit_residual(landmarks, source, mix)
        if residual > 1.5 * self.p.fit_limit or self.light_frame.fold_fraction(landmarks) > 0.05:
            warning = f"landmark fit is poor (residual {residual:.1f} px): shape left unchanged"
        elif a_shape > 0:
            delta = self.p.shape_at(target, mix) - self.p.shape_at(source, mix)
            cranium = cranium_scale(source, target)
            for factor in (1.0, 0.5, 0.25):
                trial = landmarks + (a_shape * factor) * delta
                head = 1.0 + (cranium - 1.0) * min(self.strength * factor, 1.0)
                out_control = scale_cranium(mesh.control_points(trial, s), trial, head, s)
                coarse = mesh.backward_map(out_control, source_control, FLOW_GRID, s)
                if mesh.min_jacobian(coarse, s) >= MIN_JACOBIAN:
                    new_lm, new_control, mapping = trial, out_control, mesh.upsample_map(coarse, s)
                    if factor < 1.0:
                        warning = f"shape change weakened to {factor:g}x to keep the warp from folding"
                    break
            else:
                warning = "shape change would fold the face: shape left unchanged"
        warped = mesh.remap(face, mapping)
        flow = (mapping - mesh.identity_map(s)).astype(np.float32)

        # where each output pixel lies in the mean frame, on the colour lattice's scale
        to_mean = mesh.upsample_map(mesh.backward_map(new_control, self.mean_control, FLOW_GRID, s), s)

        def to_face(image: np.ndarray) -> np.ndarray:
            grid = image.shape[0]
            lattice = (to_mean + 0.5) * (grid / s) - 0.5
            return cv2.remap(
                np.ascontiguousarray(image),
                lattice[..., 0],
                lattice[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )

        # masks in the output frame
        edit_mask, hair_mask, nonage = self._masks(warped, new_lm)

        # 2. colour (relit, bin by bin) and 3. texture, in the mean frame, brought to the face
        d_colour = self._colour_change(light, source, target, mix) * a_colour
        ratio = self._texture_ratio(source, target, mix, min(a_shape, TEXTURE_GAIN_CAP))
        ycc = to_ycrcb(warped)
        out = ycc.copy()
        out[..., 0] += to_face(np.ascontiguousarray(d_colour[..., 0])) * edit_mask
        if not gray:
            for c in (1, 2):
                out[..., c] += to_face(np.ascontiguousarray(d_colour[..., c])) * edit_mask
        base = out[..., 0]
        if self.non_age and nonage.any():
            # Telea fills hair/background before the bands are taken, so their edges are not
            # amplified into the face; the original pixels come back through the mask below
            filled = cv2.inpaint(
                np.clip(base, 0, 255).astype(np.uint8), nonage.astype(np.uint8), 3.0, cv2.INPAINT_TELEA
            ).astype(np.float32)
            base = np.where(nonage, filled, base)
        bands, _ = decompose(base)
        detail = np.zeros_like(base)
        for k, band in enumerate(bands):
            detail += (to_face(np.ascontiguousarray(ratio[k])) - 1.0) * band
        out[..., 0] += detail * edit_mask

        # 4. hair greys above ~50
        grey = self._greying(source, target) if self.hair else 0.0
        if grey > 0 and hair_mask.any():
            h = hair_mask * grey
            lighter = np.minimum(out[..., 0] * 0.55 + 125.0, 235.0)
            out[..., 0] += (lighter - out[..., 0]) * h
            for c in (1, 2):
                out[..., c] += (128.0 - out[..., c]) * h
        if gray:
            out[..., 1:] = ycc[..., 1:]  # a grayscale face stays grayscale: no chroma change at all
        edited = from_ycrcb(out)
        if gray:
            edited = np.repeat(edited[..., :1], 3, axis=2)
        mask = np.maximum(edit_mask, hair_mask * (grey > 0))
        return FaceEdit(edited, warped, flow, mask.astype(np.float32), warning)

    # --- steps -------------------------------------------------------------------------------

    def _fit_residual(self, landmarks: np.ndarray, source: float, mix: list) -> float:
        """RMS distance (px) of the face's mesh points from the source prototype after a
        similarity fit: large when the landmarker failed."""
        ref = self.p.shape_at(source, mix)[: mesh.MESH_POINTS].astype(np.float64)
        fitted = procrustes_to(landmarks[None, : mesh.MESH_POINTS].astype(np.float64), ref)[0]
        return float(np.sqrt(((fitted - ref) ** 2).sum(axis=1).mean()))

    def _colour_change(self, light: np.ndarray, source: float, target: float, mix: list) -> np.ndarray:
        """(g, g, 3) YCrCb change in the mean frame: mean difference plus the lighting terms;
        ``light`` is the face's shape-normalised sample on the light lattice."""
        x = light
        w = self.light_region[..., None]
        chain = _age_chain(source, target, self.p.centres)
        lighting = np.zeros_like(x)
        for a, b in zip(chain[:-1], chain[1:]):
            step = self._relit(b, x, mix, w) - self._relit(a, x, mix, w)
            lighting += step
            x = x + step
        fine = self.p.colour_at(target, mix) - self.p.colour_at(source, mix)
        fine_light = cv2.resize(fine, (LIGHT_GRID, LIGHT_GRID), interpolation=cv2.INTER_AREA)
        # the light-lattice steps hold the mean difference too: keep only their lighting part,
        # and take the mean difference at the finer lattice
        lighting_only = lighting - fine_light
        change = fine + cv2.resize(lighting_only, (COLOUR_GRID, COLOUR_GRID), interpolation=cv2.INTER_LINEAR)
        change = cv2.GaussianBlur(change, (0, 0), sigmaX=1.0)
        return change * self.region[..., None]

    def _relit(self, age: float, x: np.ndarray, mix: list, w: np.ndarray) -> np.ndarray:
        """The prototype at ``age`` lit like ``x`` (light lattice, YCrCb)."""
        out = np.zeros_like(x)
        for cell, weight in self.p.cell_weights(age, mix).items():
            mu = self.light_mean[cell]
            basis = self.light_basis[cell]
            coeff = basis @ ((x - mu) * w).ravel()
            out += weight * (mu + (basis.T @ coeff).reshape(x.shape))
        return out

    def _texture_ratio(self, source: float, target: float, mix: list, strength: float) -> np.ndarray:
        """(K, g, g) band scale factors in the mean frame (1 outside the face region)."""
        e_t = self.p.energy_at(target, mix)
        e_s = self.p.energy_at(source, mix)
        ratio = np.clip((e_t + ENERGY_FLOOR) / (e_s + ENERGY_FLOOR), *RATIO_RANGE) ** strength
        ratio = np.stack([cv2.GaussianBlur(r, (0, 0), sigmaX=1.0) for r in ratio])
        return 1.0 + (ratio - 1.0) * self.energy_region[None]

    def _masks(self, warped: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edit weight, hair weight, non-age bool) on the output face."""
        from faceage.faces.landmarks import region_polygons

        s = self.face_size
        shape = (s, s)
        protect = _fill(
            shape,
            region_polygons(landmarks, "left_eye")
            + region_polygons(landmarks, "right_eye")
            + region_polygons(landmarks, "lips")[1:],
        )  # eye openings and the inner mouth
        protect = _feather(cv2.dilate(protect, np.ones((3, 3), np.uint8)), s / 128.0)
        hair = np.zeros(shape, np.float32)
        nonage = np.zeros(shape, bool)
        if self.non_age or self.hair:
            masks = self._face_masks(warped, landmarks)
            # grown a little: the segmenter's edge leaves a rim of coloured hair otherwise
            grown = cv2.dilate(masks["hair"].astype(np.uint8), np.ones((5, 5), np.uint8)) & ~masks["background"]
            # only around the head: on tight crops the segmenter also calls blurred padding and
            # background "person", which would otherwise grey in blocks far from the head
            head = _feather(_fill(shape, [mesh.head_ring(landmarks, s, scale=HAIR_REACH)]), s / 20.0)
            near = _feather(_fill(shape, [mesh.head_ring(landmarks, s, scale=HAIR_SURE)]), s / 24.0)
            likely = np.maximum(near, _hair_like(warped, masks["skin"]))  # near the face: all of the hair
            hair = _feather(grown.astype(np.float32), s / 128.0) * head * likely
            nonage = masks["hair"] | masks["background"]
        if self.non_age:
            oval = _fill(shape, region_polygons(landmarks, "face_oval"))
            region = _feather(cv2.erode(oval, np.ones((5, 5), np.uint8)), s / 64.0) * (1.0 - hair)
        else:
            region = np.ones(shape, np.float32)
        return (region * (1.0 - protect)).astype(np.float32), hair, nonage

    def _face_masks(self, image: np.ndarray, landmarks: np.ndarray) -> dict:
        from faceage.faces.masks import face_masks

        if self._segmenter is None:
            self._segmenter = PersonSegmenter()
        person = self._segmenter.predict(image)
        masks = face_masks(image, landmarks, person)
        # the hairline refinement can call a patch of hair "scalp": grey the geometric hair too,
        # so the greying is never patchy
        plain = face_masks(image, landmarks, person, refine=False)
        masks["hair"] = masks["hair"] | plain["hair"]
        return masks

    @staticmethod
    def _greying(source: float, target: float) -> float:
        def amount(age: float) -> float:
            return float(np.clip((age - 48.0) / 32.0, 0.0, 1.0)) * 0.85

        return max(amount(target) - amount(source), 0.0)


def calibrate(
    method: PrototypeMethod,
    faces: np.ndarray,
    landmarks: np.ndarray,
    source_ages: np.ndarray,
    targets: tuple[float, ...],
    gains: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0),
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Per target age, the strength gain whose results faceage's *own* age regressor reads closest
    to the target (never the independent estimator, which only judges). Returns (targets, gains,
    the table of every trial)."""
    import torch

    from faceage.models.io import load_age_regressor

    regressor = load_age_regressor(device=device).eval()
    table = []
    best = []
    saved = (method.strength, method.calibrated)
    method.calibrated = False
    try:
        for t in targets:
            trials = []
            for g in gains:
                method.strength = saved[0] * g
                edited = method.edit(faces, source_ages, t, landmarks).edited
                x = torch.from_numpy(edited).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                with torch.inference_mode():
                    ages = regressor(x.to(device)).age.cpu().numpy()
                trials.append((g, float(ages.mean())))
                table.append({"target": t, "gain": g, "regressor_mean": round(float(ages.mean()), 2)})
            # the smallest gain within a year of the best: stronger edits cost identity
            errors = [abs(m - t) for _, m in trials]
            lowest = min(errors)
            best.append(next(g for (g, _), e in zip(trials, errors) if e <= lowest + 1.0))
    finally:
        method.strength, method.calibrated = saved
    return np.asarray(targets, np.float32), np.asarray(best, np.float32), table
