"""The aging benchmark (DESIGN "How we measure"): any method, the test split, independent judges.

For each test face and each target group 0, 10, 20, 30, 50 (decades; the ideal predicted mean is
the group centre 5, 15, 25, 35, 55) the method ages the aligned face; the *independent* age
estimator (``faceage.eval.age_estimator``, never used in training) reads the result, and the independent
verifier (SFace; the training identity term used AlexNet features, a different network) decides
whether input and output are the same person at its standard threshold. Reported: predicted age
mean ± std and verification rate per target group, overall and per ethnicity group, and the
method's ms per face. The source age given to the method is the independent estimate of the
input, exactly as ``faceage age`` does on a photo.

The faces are a seeded random sample of the split (``limit``), so reruns are comparable; all are
already aligned by ``faceage data prepare``, so detection and paste-back are not part of these
numbers (their cost is in ``benchmarks/pipeline.py``). A method of another face size gets the
faces resized to its size (same FFHQ framing); targets are clamped to its supported ages.

Both judges can be fooled: the estimator reads coloured streaks as age and the verifier forgives
them. So every run also measures the guards of ``faceage.eval.guards`` (fine chroma detail out/in,
gray stays gray, FD/KID against real faces of the target group, a second age opinion from
faceage's own regressor) and, in ``faceage bench aging``, the real-person protocol of
``faceage.bench.lag`` and a 16-face picture grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceage.methods.base import AgingMethod

TARGET_GROUPS = {0: 5.0, 10: 15.0, 20: 25.0, 30: 35.0, 50: 55.0}  # decade -> centre (the ideal mean)
# GLS-Age (*Face aging by global–local co-embedding and semantic-mask-driven editing*, Tables 1 and 2) on the same target groups, for reference in the report.
ANCHOR_AGE = {0: (7.01, 2.01), 10: (15.22, 3.04), 20: (23.33, 2.74), 30: (33.29, 3.17), 50: (56.25, 7.10)}
GRID_CHILDREN = 4  # the picture grid holds at least this many children
ANCHOR_IDENTITY = {0: 75.5, 10: 87.8, 20: 98.6, 30: 98.8, 50: 97.2}


def read_faces(data: str | Path, split: str, limit: int | None, seed: int) -> dict:
    """A seeded random sample of a split: images (N, S, S, 3) uint8, ages, ethnicities, keys."""
    from faceage.data.shards import ShardReader, decode_landmarks
    from faceage.errors import DatasetError

    keys, images, ages, ethnicities, points = [], [], [], [], []
    missing = np.full((478, 2), np.nan, np.float32)
    for key, image, labels in ShardReader(data, split=split):
        keys.append(key)
        images.append(image)
        ages.append(float(labels["age"]))
        ethnicities.append(str(labels.get("ethnicity", "unknown")))
        lm = decode_landmarks(labels)
        points.append(missing if lm is None or lm.shape != (478, 2) else lm)
    if not keys:
        raise DatasetError(f"split '{split}' of {data} holds no faces")
    order = np.random.default_rng(seed).permutation(len(keys))
    if limit is not None:
        order = np.sort(order[:limit])
    return {
        "keys": [keys[i] for i in order],
        "images": np.stack([images[i] for i in order]),
        "ages": np.asarray(ages, np.float32)[order],
        "ethnicities": np.asarray(ethnicities)[order],
        "landmarks": np.stack(points)[order],
    }


def faces_for(method, faces: dict) -> dict:  # noqa: ANN001 - an AgingMethod
    """``faces`` as ``method`` needs them: only faces with landmarks for methods that use them."""
    if not method.uses_landmarks:
        return faces
    keep = np.isfinite(faces["landmarks"]).all(axis=(1, 2))
    if not keep.any():
        from faceage.errors import DatasetError

        raise DatasetError(
            f"method {method.name!r} needs landmarks, and the prepared faces carry none "
            "(prepare them again with this faceage version)"
        )
    return {k: ([v[i] for i in np.flatnonzero(keep)] if isinstance(v, list) else v[keep]) for k, v in faces.items()}


def scale_landmarks(points: np.ndarray, stored: int, size: int) -> np.ndarray:
    """Landmarks of ``stored`` px faces on the same faces resized to ``size`` px (pixel centres kept)."""
    return ((points + 0.5) * (size / stored) - 0.5).astype(np.float32)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def _summary(pred: np.ndarray, accepted: np.ndarray, similarity: np.ndarray) -> dict:
    return {
        "n": int(len(pred)),
        "age_mean": float(pred.mean()),
        "age_std": float(pred.std()),
        "identity_rate": float(accepted.mean() * 100),
        "similarity_mean": float(similarity.mean()),
    }


def reference_features(
    data: str | Path,
    split: str,
    exclude: set[str],
    centres: list[float],
    size: int,
    extractor,
    cap: int,
    seed: int,
    estimator=None,
) -> tuple[dict[float, np.ndarray], dict[float, np.ndarray]]:
    """Features of REAL faces of each target group (label age in centre - 5 .. centre + 4), at
    ``size`` px, from the split's faces not in ``exclude``; at most ``cap`` per group, seeded order;
    and what ``estimator`` (the independent one; None: nothing) reads on them, at the stored size: the
    age a perfect method would be read at (the estimator under-reads the old).

    Features are computed as faces stream by, so a large split never sits in memory as pixels.
    """
    from faceage.data.shards import ShardReader
    from faceage.eval.guards import face_features

    pending: dict[float, list[np.ndarray]] = {c: [] for c in centres}
    done: dict[float, list[np.ndarray]] = {c: [] for c in centres}
    read: dict[float, list[np.ndarray]] = {c: [] for c in centres}
    counts = dict.fromkeys(centres, 0)

    def flush(c: float) -> None:
        if pending[c]:
            batch = np.stack(pending[c])
            done[c].append(face_features(_resize(batch, size), extractor))
            if estimator is not None:
                read[c].append(estimator.estimate_aligned(batch))
            pending[c] = []

    for key, image, labels in ShardReader(data, split=split):
        if key in exclude:
            continue
        assert isinstance(image, np.ndarray)  # ShardReader decodes by default: pixels, not JPEG bytes
        age = float(labels["age"])
        for c in centres:
            if abs(age - c) < 5 or age == c - 5:
                if counts[c] < cap:
                    pending[c].append(image)
                    counts[c] += 1
                    if len(pending[c]) >= 64:
                        flush(c)
    out, ages = {}, {}
    for c in centres:
        flush(c)
        feats = np.concatenate(done[c]) if done[c] else np.zeros((0, 1280), np.float32)
        out[c] = feats[np.random.default_rng(seed).permutation(len(feats))]
        ages[c] = np.concatenate(read[c]) if read[c] else np.zeros(0, np.float64)
    return out, ages


def _own_ages(regressor, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    """faceage's own age regressor (the second opinion) on uint8 faces."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(faces), batch):
            x = torch.from_numpy(np.ascontiguousarray(faces[i : i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            out.append(regressor(x).age.numpy())
    return np.concatenate(out).astype(np.float32)


def edit_size(
    inputs: np.ndarray, edited: np.ndarray, flows: list, warnings: list, stats: list, points: np.ndarray
) -> dict:
    """How big the edits were (a weak edit must show as a number, not only as a missed age):
    landmark displacement as a share of the face height (eyes to chin, x2), mean absolute luma
    change inside the face oval, the share of faces whose shape step was weakened or skipped, and
    the share whose target loop (if any) reached its target by the method's own regressor."""
    import cv2

    from faceage.faces.landmarks import region_polygons

    shares, lumas = [], []
    for i in range(len(inputs)):
        lm = points[i]
        flow = flows[i]
        if flow is not None and np.isfinite(lm).all():
            xy = np.clip(np.round(lm[:468]).astype(int), 0, flow.shape[0] - 1)
            moved = np.linalg.norm(flow[xy[:, 1], xy[:, 0]], axis=1).mean()
            eyes = lm[[33, 133, 362, 263]].mean(axis=0)
            shares.append(float(moved / max(2.0 * np.linalg.norm(lm[152] - eyes), 1e-6)))
        else:
            shares.append(0.0)
        mask = np.zeros(inputs.shape[1:3], np.uint8)
        if np.isfinite(lm).all():
            cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in region_polygons(lm, "face_oval")], 1)
        inside = mask.astype(bool) if mask.any() else np.ones(inputs.shape[1:3], bool)
        y_in = cv2.cvtColor(inputs[i], cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
        y_out = cv2.cvtColor(edited[i], cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
        lumas.append(float(np.abs(y_out - y_in)[inside].mean()))
    shape_limited = [bool(w) and "shape" in w for w in warnings]
    looped = [st for st in stats if isinstance(st, dict) and "loop_reached" in st]
    return {
        "shape_share": float(np.mean(shares)),
        "luma_change": float(np.mean(lumas)),
        "shape_limited_share": float(np.mean(shape_limited) * 100) if warnings else 0.0,
        "loop_reached_share": float(np.mean([st["loop_reached"] for st in looped]) * 100) if looped else None,
        "loop_strength_mean": float(np.mean([st["loop_strength"] for st in looped])) if looped else None,
    }


def _aimed(method: AgingMethod, age: float) -> float:
    lo, hi = method.supported_ages()
    return float(min(max(age, lo), hi))


def guard_verdicts(result: dict) -> dict:
    """Pass/fail of each guard from a benchmark result (thresholds in ``faceage.eval.guards``)."""
    from faceage.eval.guards import CHROMA_MEDIAN_MAX, CHROMA_P90_MAX, GRAY_SPREAD_MAX

    rows = list(result["groups"].values())
    chroma = all(r["chroma_median"] <= CHROMA_MEDIAN_MAX and r["chroma_p90"] <= CHROMA_P90_MAX for r in rows)
    gray = all(r["gray_spread_max"] <= GRAY_SPREAD_MAX for r in rows if r.get("gray_spread_max") is not None)
    scored = [r["realism"] for r in rows if r.get("realism", {}).get("fd") is not None]
    # Edited faces may not sit further from real faces of the target age than the unedited inputs,
    # on average over the targets: a method must not trade realism for the estimator's age.
    realism = (not scored) or (np.mean([s["fd"] for s in scored]) <= np.mean([s["fd_unedited"] for s in scored]))
    return {
        "chroma": bool(chroma),
        "gray": bool(gray),
        "realism": bool(realism),
        "passed": bool(chroma and gray and realism),
    }


def run_aging_benchmark(
    method: AgingMethod,
    data: str | Path,
    split: str = "test",
    limit: int | None = 500,
    seed: int = 0,
    batch: int = 32,
    log: Callable[[str], None] = print,
    gray_faces: int = 32,
    realism: bool = True,
    reference_cap: int = 1000,
    extractor=None,
) -> dict:
    """Run the benchmark with its guards; returns a JSON-able dict (see ``format_report``).

    The method sees the faces at ``method.face_size`` (the split's faces resized, same framing);
    the independent judges see its output resized back to the stored size, like the inputs. The
    guards are measured at the method's size. ``gray_faces`` gray copies of the first sampled
    faces check that gray stays gray (0 skips); ``realism`` False skips FD/KID (no feature net).
    """
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.eval.guards import (
        CHROMA_EPS,
        channel_spread,
        chroma_detail_energy,
        face_features,
        gray_copies,
        realism_scores,
    )
    from faceage.eval.identity import IdentityVerifier
    from faceage.methods.base import run_edit
    from faceage.models.io import load_age_regressor

    faces = faces_for(method, read_faces(data, split, limit, seed))
    stored = faces["images"]
    inputs = _resize(stored, method.face_size)
    points = scale_landmarks(faces["landmarks"], stored.shape[1], method.face_size)
    estimator, verifier = AgeEstimator(), IdentityVerifier("sface")
    regressor = load_age_regressor().requires_grad_(False)
    source_ages = estimator.estimate_aligned(stored)
    source_emb = verifier.embed_aligned(stored)
    source_own = _own_ages(regressor, inputs)
    energy_in = chroma_detail_energy(inputs)
    log(
        f"{len(stored)} {split} faces; independent source age MAE vs labels "
        f"{np.abs(source_ages - faces['ages']).mean():.2f}"
    )
    references = None
    real_ages: dict[float, np.ndarray] = {}
    if realism:
        from faceage.eval.fid import FeatureExtractor

        extractor = extractor or FeatureExtractor("cpu")
        references, real_ages = reference_features(
            data,
            split,
            set(faces["keys"]),
            list(TARGET_GROUPS.values()),
            method.face_size,
            extractor,
            reference_cap,
            seed,
            estimator,
        )
        features_in = face_features(inputs[: max(len(r) // 2 for r in references.values())], extractor)
        log("real reference faces per target group: " + ", ".join(f"{c:g}: {len(f)}" for c, f in references.items()))
    gray = gray_copies(inputs[:gray_faces]) if gray_faces else None
    gray_ages = estimator.estimate_aligned(gray_copies(stored[:gray_faces])) if gray_faces else None
    groups, method_seconds = {}, 0.0
    for decade, centre in TARGET_GROUPS.items():
        aimed = _aimed(method, centre)
        parts, flows, warnings, stats = [], [], [], []
        for i in range(0, len(inputs), batch):
            t0 = time.perf_counter()
            edit = run_edit(method, inputs[i : i + batch], source_ages[i : i + batch], aimed, points[i : i + batch])
            method_seconds += time.perf_counter() - t0
            parts.append(edit.edited)
            n = len(edit.edited)
            flows += list(edit.flow) if edit.flow is not None else [None] * n
            warnings += list(edit.warnings) if edit.warnings else [None] * n
            stats += list(edit.stats) if edit.stats else [{}] * n
        edited = np.concatenate(parts)
        judged = _resize(edited, stored.shape[1])
        pred = estimator.estimate_aligned(judged)
        result = verifier.verify(source_emb, verifier.embed_aligned(judged))
        accepted, similarity = np.asarray(result.accepted), np.asarray(result.score)
        row = _summary(pred, accepted, similarity)
        row["centre"], row["aimed"] = centre, aimed
        row["edit_size"] = edit_size(inputs, edited, flows, warnings, stats, points)
        own = _own_ages(regressor, edited)
        row["own_age_mean"] = float(own.mean())
        row["age_disagreement"] = float(np.abs(own - pred).mean())
        ratio = (chroma_detail_energy(edited) + CHROMA_EPS) / (energy_in + CHROMA_EPS)
        row["chroma_median"], row["chroma_p90"] = float(np.median(ratio)), float(np.percentile(ratio, 90))
        if gray is not None and gray_ages is not None:
            gray_out = np.concatenate(
                [
                    run_edit(method, gray[i : i + batch], gray_ages[i : i + batch], aimed, points[i : i + batch]).edited
                    for i in range(0, len(gray), batch)
                ]
            )
            spread = channel_spread(gray_out)
            row["gray_spread_max"], row["gray_spread_mean"] = int(spread.max()), float(spread.mean())
        if references is not None:
            real = real_ages[centre]
            if len(real):
                row["real_age_mean"], row["real_age_std"], row["real_n"] = (
                    float(real.mean()),
                    float(real.std()),
                    len(real),
                )
            ref = references[centre]
            half = len(ref) // 2
            n = min(len(edited), half)  # realism_scores compares n faces per side: embed no more
            row["realism"] = realism_scores(
                face_features(edited[:n], extractor), features_in[:n], ref[:half], ref[half:]
            )
        row["ethnicity"] = {
            e: _summary(pred[m], accepted[m], similarity[m])
            for e in sorted(set(faces["ethnicities"]))
            if (m := faces["ethnicities"] == e).any()
        }
        groups[str(decade)] = row
        log(
            f"target {decade}s (centre {centre:g}): age {row['age_mean']:.2f} ± {row['age_std']:.2f}, "
            f"identity {row['identity_rate']:.1f} %, chroma detail x{row['chroma_median']:.2f} "
            f"(p90 x{row['chroma_p90']:.2f})" + (f", gray spread {row['gray_spread_max']}" if gray is not None else "")
        )
    out = {
        "method": method.describe(),
        "split": split,
        "faces": len(stored),
        "seed": seed,
        "face_size": method.face_size,
        "stored_size": int(stored.shape[1]),
        "source_age_mean": float(source_ages.mean()),
        "source_age_std": float(source_ages.std()),
        "source_own_age_mean": float(source_own.mean()),
        "source_age_disagreement": float(np.abs(source_own - source_ages).mean()),
        "gray_faces": int(0 if gray is None else len(gray)),
        "groups": groups,
        "method_ms_per_face": 1000 * method_seconds / (len(inputs) * len(TARGET_GROUPS)),
    }
    out["guards"] = guard_verdicts(out)
    return out


def grid_faces(data: str | Path, split: str, seed: int, method) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The grid's faces and their landmarks, at the method's size: 16 drawn with the benchmark's
    seed among the faces the method can take, at least ``GRID_CHILDREN`` of them children (label
    age <= 12: the faces an aging tool most often gets wrong), in the order drawn."""
    from faceage.bench.grid import GRID_FACES

    faces = faces_for(method, read_faces(data, split, GRID_FACES * 20, seed))
    child = np.flatnonzero(faces["ages"] <= 12)[:GRID_CHILDREN]
    others = [i for i in range(len(faces["ages"])) if i not in set(child.tolist())]
    pick = np.sort(np.concatenate([child, others[: GRID_FACES - len(child)]]).astype(int))
    stored = faces["images"][pick]
    size = method.face_size
    return _resize(stored, size), scale_landmarks(faces["landmarks"][pick], stored.shape[1], size)


def format_report(result: dict, command: str, machine: str) -> str:
    """Markdown section for ``benchmarks/results/aging.md`` (one section per method)."""
    name = result["method"]["method"]
    lines = [
        f"## {name}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}  ",
        f"Method: `{result['method']}`  ",
        f"{result['faces']} faces of the {result['split']} split (seed {result['seed']}); "
        f"method alone {result['method_ms_per_face']:.1f} ms per aligned face.",
        f"Unedited input faces read {result['source_age_mean']:.2f}"
        + (f" ± {result['source_age_std']:.2f}" if "source_age_std" in result else "")
        + " years (the independent estimate a method that changes nothing would score in every row). "
        "The last column is what the same estimator reads on real test faces of each group (labelled "
        "centre - 5 .. centre + 4, none of the sample): the reading a perfect method would get.",
        "",
        "| target | ideal | predicted age (mean ± std) | off by | identity verified (SFace) | mean similarity "
        "| GLS-Age anchor age / identity | real faces of the group read (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for decade, row in result["groups"].items():
        a_mean, a_std = ANCHOR_AGE[int(decade)]
        real = (
            f"{row['real_age_mean']:.2f} ± {row['real_age_std']:.2f} ({row['real_n']})"
            if "real_age_mean" in row
            else "-"
        )
        lines.append(
            f"| {decade}s | {row['centre']:g} | {row['age_mean']:.2f} ± {row['age_std']:.2f} | "
            f"{row['age_mean'] - row['centre']:+.2f} | {row['identity_rate']:.1f} % | "
            f"{row['similarity_mean']:.3f} | {a_mean} ± {a_std} / {ANCHOR_IDENTITY[int(decade)]} % | {real} |"
        )
    if any("edit_size" in row for row in result["groups"].values()):
        lines += _edit_size_lines(result)
    if "guards" in result:
        lines += _guard_lines(result)
    if result.get("lag"):
        from faceage.bench.lag import format_lag

        lines += format_lag(result["lag"])
        if result.get("lag_command"):
            lines += ["", f"LAG command (added to the results above): `{result['lag_command']}`"]
    ethnicities = sorted({e for row in result["groups"].values() for e in row["ethnicity"]})
    lines += [
        "",
        "Per ethnicity (predicted age mean ± std / identity verified):",
        "",
        "| ethnicity | n | " + " | ".join(f"{d}s" for d in result["groups"]) + " |",
        "|---|---|" + "---|" * len(result["groups"]),
    ]
    for e in ethnicities:
        cells, n = [], 0
        for row in result["groups"].values():
            s = row["ethnicity"].get(e)
            n = s["n"] if s else n
            cells.append(f"{s['age_mean']:.1f} ± {s['age_std']:.1f} / {s['identity_rate']:.0f} %" if s else "-")
        lines.append(f"| {e} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _edit_size_lines(result: dict) -> list[str]:
    lines = [
        "",
        "Size of the edit: landmark displacement as a share of the face height (eyes to chin x2), mean absolute "
        "luma change inside the face oval (grey levels), faces whose shape step was weakened or skipped, and "
        "(closed loop) faces whose target loop reached the target by faceage's own regressor, with the mean "
        "strength it chose.",
        "",
        "| target | landmark displacement | luma change | shape weakened/skipped | loop reached | loop strength |",
        "|---|---|---|---|---|---|",
    ]
    for decade, row in result["groups"].items():
        e = row.get("edit_size")
        if not e:
            continue
        lines.append(
            f"| {decade}s | {e['shape_share'] * 100:.2f} % | {e['luma_change']:.2f} | {e['shape_limited_share']:.1f} % | "
            f"{_fmt(e.get('loop_reached_share'))} % | {_fmt(e.get('loop_strength_mean'), '.2f')} |"
        )
    return lines


def _guard_lines(result: dict) -> list[str]:
    from faceage.eval.guards import CHROMA_MEDIAN_MAX, CHROMA_P90_MAX, GRAY_SPREAD_MAX

    verdict = result["guards"]
    word = {True: "pass", False: "FAIL"}
    lines = [
        "",
        f"Guards ({'all pass' if verdict['passed'] else 'FAILED'}): chroma detail {word[verdict['chroma']]} "
        f"(median <= {CHROMA_MEDIAN_MAX:g}, p90 <= {CHROMA_P90_MAX:g}), gray kept {word[verdict['gray']]} "
        f"({result['gray_faces']} gray faces, spread <= {GRAY_SPREAD_MAX} levels), realism {word[verdict['realism']]} "
        "(mean FD over targets not above the unedited inputs'). Chroma detail: energy of YCrCb chroma minus its "
        "Gaussian blur in the face ellipse, output over input. FD / KID: MobileNetV2 features against real test "
        "faces of the target group (not in the sample), n faces per side; floor = two disjoint real sets. "
        "Own age: faceage's age regressor, beside the independent estimator.",
        "",
        "| target | chroma detail median / p90 | gray spread max (mean) | FD edited / unedited / floor | "
        "KID x1000 edited / unedited / floor | n (ref) | own age | own vs independent |",
        "|---|---|---|---|---|---|---|---|",
        f"| unedited | 1.00 / 1.00 | 0 | | | | {result['source_own_age_mean']:.2f} | "
        f"{result['source_age_disagreement']:.2f} |",
    ]
    for decade, row in result["groups"].items():
        r = row.get("realism") or {}
        gray = (
            "-" if row.get("gray_spread_max") is None else f"{row['gray_spread_max']} ({row['gray_spread_mean']:.1f})"
        )
        lines.append(
            f"| {decade}s | {row['chroma_median']:.2f} / {row['chroma_p90']:.2f} | {gray} | "
            f"{_fmt(r.get('fd'))} / {_fmt(r.get('fd_unedited'))} / {_fmt(r.get('fd_floor'))} | "
            f"{_fmt(r.get('kid'), '.2f', 1e3)} / {_fmt(r.get('kid_unedited'), '.2f', 1e3)} / "
            f"{_fmt(r.get('kid_floor'), '.2f', 1e3)} | {r.get('n', '-')} ({r.get('n_reference', '-')}) | "
            f"{row['own_age_mean']:.2f} | {row['age_disagreement']:.2f} |"
        )
    if result.get("grid"):
        lines += [
            "",
            f"Grid: `{result['grid']}` (16 test faces; columns: input, then targets "
            + ", ".join(f"{t:g}" for t in result.get("grid_targets", []))
            + ").",
        ]
    return lines


def update_results_file(path: str | Path, section: str, title: str = "# Aging benchmark") -> None:
    """Replace (or append) this method's ``## name`` section in the markdown results file."""
    from faceage.atomic import write_text_atomic

    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else f"{title}\n\n"
    head = section.splitlines()[0]
    blocks = text.split("\n## ")
    kept = [blocks[0].rstrip() + "\n"] + [
        "## " + b.rstrip() + "\n" for b in blocks[1:] if not ("## " + b).startswith(head)
    ]
    kept.append(section)
    write_text_atomic(path, "\n".join(kept))
