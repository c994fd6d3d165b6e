"""The real-person protocol on LAG ("Large Age-Gap face verification", Bianco 2017).

LAG holds, per person, photos young and old (``images/PERSON/young/NN.jpg``, ``old/NN.jpg``, 100x100
crops). A method that truly ages a face should move the young photo *towards the same person's real
old photo* (and the old one back towards the young); streaks and colour shifts cannot do that. Per
person (first young and first old photo):

- both photos are upscaled x4 (the detector needs more than 100 px), aligned like every faceage
  face, and their ages read by the independent estimator;
- young -> aged to the old photo's estimated age (whole years); old -> aged to the young photo's;
- SFace similarity of the result to the REAL photo of the other age, beside the unedited photo's
  similarity: the gain, and whether it exceeds a margin;
- the margin is calibrated on null edits (JPEG q=90, 1-px blur), so that each moves at most 5 % of
  people "closer" by more than it: a gain beyond it is more than re-encoding noise;
- the age error of the result against the other photo's estimated age, beside the unedited error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceage.methods.base import AgingMethod, run_edit

DEFAULT_LAG = Path("../shared/datasets/lag")  # relative to the repository root, where CI keeps it
UPSCALE = 4
NULL_SHARE = 0.05
CHILD_AGE = 12.0  # people whose young photo reads at most this are reported apart as children


def lag_people(root: str | Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
    """(person, first young photo, first old photo) for the first ``limit`` people by name."""
    from faceage.errors import DatasetError

    images = Path(root) / "images"
    if not images.is_dir():
        raise DatasetError(f"LAG folder {root} has no images/ folder (expected images/PERSON/young|old/NN.jpg)")
    people = []
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        young = sorted((person / "young").glob("*.jpg"))
        old = sorted((person / "old").glob("*.jpg"))
        if young and old:
            people.append((person.name, young[0], old[0]))
        if limit is not None and len(people) >= limit:
            break
    if not people:
        raise DatasetError(f"LAG folder {root} holds no person with a young and an old photo")
    return people


def _load(path: Path) -> np.ndarray:
    import cv2
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return cv2.resize(rgb, (rgb.shape[1] * UPSCALE, rgb.shape[0] * UPSCALE), interpolation=cv2.INTER_CUBIC)


def align_people(people, size: int, pipeline=None) -> tuple[list[str], dict, dict, int]:
    """Aligned young and old faces of the people whose both photos show a face with landmarks:
    for each of young/old, ``{"images": (P, size, size, 3) uint8, "landmarks": (P, 478, 2)}``."""
    from faceage.errors import NoFaceError

    if pipeline is None:
        from faceage.faces.pipeline import FacePipeline

        pipeline = FacePipeline(size=size)
    names, young, old, young_lm, old_lm, skipped = [], [], [], [], [], 0
    for name, young_path, old_path in people:
        try:
            y = pipeline.align_one(_load(young_path), str(young_path))
            o = pipeline.align_one(_load(old_path), str(old_path))
        except NoFaceError:
            skipped += 1
            continue
        if y.landmarks is None or o.landmarks is None:
            skipped += 1
            continue
        names.append(name)
        young.append(y.image)
        old.append(o.image)
        young_lm.append(y.landmarks)
        old_lm.append(o.landmarks)

    def pack(images: list, points: list) -> dict:
        if not images:
            return {"images": np.zeros((0, size, size, 3), np.uint8), "landmarks": np.zeros((0, 478, 2), np.float32)}
        return {"images": np.stack(images), "landmarks": np.stack(points).astype(np.float32)}

    return names, pack(young, young_lm), pack(old, old_lm), skipped


def _edit_each(
    method: AgingMethod, faces: np.ndarray, sources: np.ndarray, targets: np.ndarray, landmarks: np.ndarray
) -> np.ndarray:
    """Each face aged to its own target, rounded to whole years so that faces sharing a target go
    through the method as one batch (half a year is far below the estimator's error)."""
    lo, hi = method.supported_ages()
    aimed = np.clip(np.round(np.asarray(targets, np.float64)), lo, hi)
    out = np.array(faces, copy=True)
    for age in np.unique(aimed):
        rows = np.flatnonzero(aimed == age)
        for start in range(0, len(rows), 32):
            chunk = rows[start : start + 32]
            out[chunk] = run_edit(method, faces[chunk], sources[chunk], float(age), landmarks[chunk]).edited
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def direction(
    method: AgingMethod,
    nulls: list[AgingMethod],
    inputs: dict,
    others: dict,
    source_ages: np.ndarray,
    other_ages: np.ndarray,
    estimator,
    verifier,
    children: np.ndarray | None = None,
) -> dict:
    """One direction (``inputs`` aged towards ``others``' ages), with its null-edit margin; both
    are ``align_people`` packs (images and landmarks). ``children`` (bool per person) marks the
    people whose young photo reads as a child: their figures are reported apart too."""
    points, faces, other_faces = inputs["landmarks"], inputs["images"], others["images"]
    other_emb = verifier.embed_aligned(other_faces)
    base = _cosine(verifier.embed_aligned(faces), other_emb)
    null_gains, null_names = [], []
    for null in nulls:
        out = _edit_each(null, faces, source_ages, other_ages, points)
        null_gains.append(_cosine(verifier.embed_aligned(out), other_emb) - base)
        null_names.append(null.name)
    margin = _margin(null_gains)
    edited = _edit_each(method, faces, source_ages, other_ages, points)
    sim = _cosine(verifier.embed_aligned(edited), other_emb)
    gain = sim - base
    reached = estimator.estimate_aligned(edited)
    child = np.zeros(len(faces), bool) if children is None else np.asarray(children, bool)
    return {
        "people": int(len(faces)),
        "target_age_mean": float(other_ages.mean()),
        "similarity_unedited": float(base.mean()),
        "similarity_edited": float(sim.mean()),
        "gain_mean": float(gain.mean()),
        "margin": margin,
        "share_closer": float((gain > margin).mean() * 100),
        "null_share_closer": {n: float((g > margin).mean() * 100) for n, g in zip(null_names, null_gains)},
        "age_error_unedited": float(np.abs(source_ages - other_ages).mean()),
        "age_error_edited": float(np.abs(reached - other_ages).mean()),
        "children": {
            "people": int(child.sum()),
            "gain_mean": float(gain[child].mean()) if child.any() else None,
            "share_closer": float((gain[child] > margin).mean() * 100) if child.any() else None,
            "age_error_edited": float(np.abs(reached - other_ages)[child].mean()) if child.any() else None,
        },
    }


def _margin(gains: list[np.ndarray]) -> float:
    from faceage.eval.guards import margin_for

    return margin_for(gains, NULL_SHARE)


def run_lag(
    method: AgingMethod,
    root: str | Path = DEFAULT_LAG,
    limit: int | None = None,
    estimator=None,
    verifier=None,
    pipeline=None,
    log: Callable[[str], None] = print,
) -> dict:
    """The protocol on the first ``limit`` people (all when None); both directions separately."""
    from faceage.bench.null_edits import null_edits

    if estimator is None:
        from faceage.eval.age_estimator import AgeEstimator

        estimator = AgeEstimator()
    if verifier is None:
        from faceage.eval.identity import IdentityVerifier

        verifier = IdentityVerifier("sface")
    people = lag_people(root, limit)
    names, young, old, skipped = align_people(people, method.face_size, pipeline)
    log(f"LAG: {len(names)} people aligned, {skipped} skipped (no face in a photo)")
    if not names:
        from faceage.errors import DatasetError

        raise DatasetError(f"LAG: no face found in the first {len(people)} people's photos")
    young_ages, old_ages = estimator.estimate_aligned(young["images"]), estimator.estimate_aligned(old["images"])
    nulls = null_edits(method.face_size)
    children = young_ages <= CHILD_AGE
    directions = {
        "young_to_old": direction(method, nulls, young, old, young_ages, old_ages, estimator, verifier, children),
        "old_to_young": direction(method, nulls, old, young, old_ages, young_ages, estimator, verifier, children),
    }
    result = {
        "people": len(people),
        "aligned": len(names),
        "skipped": skipped,
        "upscale": UPSCALE,
        "young_age_mean": float(young_ages.mean()),
        "old_age_mean": float(old_ages.mean()),
        **directions,
    }
    for key, d in directions.items():
        log(
            f"LAG {key}: similarity {d['similarity_unedited']:.3f} -> {d['similarity_edited']:.3f} "
            f"(gain {d['gain_mean']:+.3f}), closer by > {d['margin']:.3f}: {d['share_closer']:.1f} %, "
            f"age error {d['age_error_unedited']:.1f} -> {d['age_error_edited']:.1f}"
        )
    return result


def format_lag(lag: dict) -> list[str]:
    """Markdown lines for the results file."""
    lines = [
        "",
        f"Real people (LAG, large age gap): {lag['aligned']} of the first {lag['people']} people "
        f"(first young and first old photo, upscaled x{lag['upscale']}; {lag['skipped']} without a face found). "
        f"Independent ages: young photos {lag['young_age_mean']:.1f}, old photos {lag['old_age_mean']:.1f}. "
        "Each photo is aged to the other photo's estimated age; SFace similarity to the REAL other photo, "
        "unedited vs edited. The margin is the smallest gain that each null edit (JPEG q=90, 1-px blur) "
        f"exceeds for at most {NULL_SHARE * 100:g} % of people.",
        "",
        "| direction | people | target age | similarity unedited -> edited | mean gain | margin | "
        "moved closer by > margin | null edits closer (jpeg / blur) | age error unedited -> edited | "
        f"children (young photo reads <= {CHILD_AGE:g}): people, gain, closer, age error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in (("young_to_old", "young -> old"), ("old_to_young", "old -> young")):
        d = lag[key]
        nulls = " / ".join(f"{v:.1f} %" for v in d["null_share_closer"].values())
        lines.append(
            f"| {label} | {d['people']} | {d['target_age_mean']:.1f} | {d['similarity_unedited']:.3f} -> "
            f"{d['similarity_edited']:.3f} | {d['gain_mean']:+.3f} | {d['margin']:.3f} | "
            f"{d['share_closer']:.1f} % | {nulls} | {d['age_error_unedited']:.1f} -> {d['age_error_edited']:.1f} | "
            + _children_cell(d.get("children"))
            + " |"
        )
    return lines


def _children_cell(c: dict | None) -> str:
    if not c or not c.get("people"):
        return "0"
    return f"{c['people']}, {c['gain_mean']:+.3f}, {c['share_closer']:.1f} %, {c['age_error_edited']:.1f}"
