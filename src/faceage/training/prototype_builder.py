"""Build the age prototypes from a prepared folder (``faceage train prototypes``).

Steps, each on the training split of a folder made by ``faceage data prepare --size 256`` (whose
samples carry their 478 landmarks):

1. labels and landmarks of every face (no image decoding);
2. the global mean shape (generalised Procrustes: every face similarity-aligned to the running
   mean) and its triangulation, the frame all statistics are taken in;
3. per shard, each face warped to the mean shape: YCrCb at two lattices and band energies, summed
   per fine cell (bin x gender x ethnicity); cached per shard in the run folder, so an interrupted
   build resumes where it stopped;
4. per cell (fine cells with at least ``min_cell`` faces, and every bin x gender pooled over
   ethnicities): mean shape, mean colour, mean band energy, and a rank-``light_rank`` basis of its
   faces around the mean (SVD) that spans lighting;
5. a small gender/ethnicity classifier (PCA + softmax regression) on shape-normalised features,
   checked on the validation split, so the method can pick cells for unlabelled photos;
6. per bin x gender, the sharp signed detail of faces aligned by collection flow
   (``faceage.training.sharp_detail``).

Steps 3 and 6 run in ``workers`` processes.

The strength calibration needs the method itself and is done by the command afterwards
(``faceage.methods.prototype.calibrate``).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceage.checksum import sha256_file
from faceage.data.shards import decode_jpeg, decode_landmarks, iter_shard, read_index
from faceage.errors import DatasetError, FaceageError
from faceage.faces import mesh
from faceage.models.prototype_frame import (
    COLOUR_GRID,
    ENERGY_GRID,
    LIGHT_GRID,
    MeanFrame,
    classifier_features,
    face_statistics,
    oval_region,
    to_ycrcb,
)
from faceage.models.prototypes import BINS, ETHNICITIES, GENDERS, POOLED, PrototypeSet, bin_of, procrustes_to
from faceage.training.sharp_detail import sharp_detail

CACHE = "cache"
FOLD_LIMIT = 0.015  # faces whose mesh flips more of its area than this are left out of the statistics


@dataclass(frozen=True)
class BuildOptions:
    size: int = 256
    min_cell: int = 80  # faces an ethnicity cell needs before it is used instead of the pooled one
    light_rank: int = 4
    max_light_faces: int = 600  # faces per cell in the lighting SVD
    pca: int = 96
    seed: int = 0
    workers: int = 2
    detail_faces: int = 400  # faces per bin x gender for the sharp detail (0: no detail)
    detail_rounds: int = 3  # collection-flow rounds


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_faces(folder: Path, split: str) -> list[dict]:
    """Labels + landmarks of every face of ``split`` (shard name and key kept to find it again)."""
    rows = []
    without = 0
    for info in read_index(folder, split):
        for key, _, labels in iter_shard(folder / info.name, decode=False):
            points = decode_landmarks(labels)
            if points is None:  # the landmarker failed on this face; alignment used the detector's points
                without += 1
                continue
            rows.append(
                {
                    "key": key,
                    "shard": info.name,
                    "age": int(labels["age"]),
                    "gender": int(labels["gender"]),
                    "ethnicity": ETHNICITIES.index(labels["ethnicity"]),
                    "landmarks": points,
                }
            )
    if without and not rows:
        raise DatasetError(
            f"{folder} has no landmarks in its samples: prepare it again with this faceage version "
            f"(or upgrade it in place: faceage data prepare ... --out {folder} --resume)"
        )
    return rows


def mean_shape(points: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes mean (kept in the aligned frame) and every face aligned to it."""
    ref = points.mean(axis=0)
    aligned = points
    for _ in range(rounds):
        aligned = procrustes_to(points, ref)
        ref = aligned.mean(axis=0)
    return ref, aligned


def _cell_key(row: dict) -> tuple[int, int, int]:
    return row["gender"], row["ethnicity"], bin_of(row["age"])


def _shard_statistics(
    folder: Path,
    shard: str,
    rows: list[dict],
    colour_frame: MeanFrame,
    energy_frame: MeanFrame,
    light_frame: MeanFrame,
    mean: np.ndarray,
    size: int,
) -> dict:
    """Sums per fine cell for one shard, plus each face's light-lattice colour and features."""
    by_key = {r["key"]: r for r in rows}
    sums: dict[tuple[int, int, int], dict] = {}
    keys, light, feats = [], [], []
    for key, jpeg, _ in iter_shard(folder / shard, decode=False):
        row = by_key.get(key)
        if row is None:
            continue
        rgb = decode_jpeg(bytes(jpeg))
        if rgb.shape != (size, size, 3):
            raise DatasetError(f"{shard}/{key} is {rgb.shape}, the build expects {size} px faces")
        stats = face_statistics(rgb, row["landmarks"], colour_frame, energy_frame, light_frame)
        cell = sums.setdefault(_cell_key(row), {"colour": 0.0, "energy": 0.0, "count": 0})
        cell["colour"] = cell["colour"] + stats["colour"]
        cell["energy"] = cell["energy"] + stats["energy"]
        cell["count"] += 1
        keys.append(key)
        light.append(stats["light"].astype(np.float16))
        feats.append(classifier_features(stats["light"], row["landmarks"], mean, size).astype(np.float16))
    cells = sorted(sums)
    return {
        "cells": np.asarray(cells, np.int16).reshape(-1, 3),
        "colour": np.stack([sums[c]["colour"] for c in cells]).astype(np.float32) if cells else np.zeros(0),
        "energy": np.stack([sums[c]["energy"] for c in cells]).astype(np.float32) if cells else np.zeros(0),
        "count": np.asarray([sums[c]["count"] for c in cells], np.int64),
        "keys": np.asarray(keys),
        "light": np.stack(light) if light else np.zeros(0, np.float16),
        "features": np.stack(feats) if feats else np.zeros(0, np.float16),
    }


def _cached(cache_dir: Path, shard: str, compute) -> dict:  # noqa: ANN001 - a zero-argument callable
    from faceage.atomic import write_bytes_atomic

    # the lattices are part of the name: a cache from other settings is never mixed in
    path = cache_dir / f"{shard}-c{COLOUR_GRID}-e{ENERGY_GRID}-l{LIGHT_GRID}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            path.unlink()  # cut short by an interruption: compute again
    result = compute()
    import io

    buf = io.BytesIO()
    np.savez(buf, **result)
    write_bytes_atomic(path, buf.getvalue())
    return result


def _fit_classifier(x: np.ndarray, gender: np.ndarray, ethnicity: np.ndarray, pca: int, seed: int):  # noqa: ANN202
    """PCA + two softmax heads (gender, ethnicity), fitted with L-BFGS; returns the arrays."""
    import torch

    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    sub = x[rng.choice(len(x), size=min(len(x), 8000), replace=False)] - mean
    _, _, vt = np.linalg.svd(sub, full_matrices=False)
    components = vt[: min(pca, len(vt))]
    pca = len(components)
    z = (x - mean) @ components.T
    scale = z.std(axis=0) + 1e-6
    components = components / scale[:, None]
    z = z / scale
    zt = torch.from_numpy(z.astype(np.float32))
    g = torch.from_numpy(gender.astype(np.int64))
    e = torch.from_numpy(ethnicity.astype(np.int64))
    w = torch.zeros(pca, len(GENDERS) + len(ETHNICITIES), requires_grad=True)
    b = torch.zeros(len(GENDERS) + len(ETHNICITIES), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    # ethnicity classes are very unequal (most faces are white or asian): weight them equally
    counts = torch.bincount(e, minlength=len(ETHNICITIES)).float().clamp_min(1)
    class_w = counts.sum() / (len(ETHNICITIES) * counts)

    def closure():  # noqa: ANN202
        opt.zero_grad()
        logits = zt @ w + b
        loss = (
            torch.nn.functional.cross_entropy(logits[:, :2], g)
            + torch.nn.functional.cross_entropy(logits[:, 2:], e, weight=class_w)
            + 1e-3 * (w**2).sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    return mean.astype(np.float32), components.astype(np.float32), w.detach().numpy(), b.detach().numpy()


def build(
    folder: str | Path, run_dir: str | Path, options: BuildOptions = BuildOptions(), progress: bool = True
) -> PrototypeSet:
    """Build the prototypes of ``folder``'s training split; caches go to ``run_dir/cache``."""
    started = time.monotonic()
    folder, run_dir = Path(folder), Path(run_dir)
    size = options.size
    manifest_size = (
        json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("size")
        if (folder / "manifest.json").is_file()
        else None
    )
    if manifest_size is None:
        raise DatasetError(f"{folder} is not a finished prepared folder (no manifest.json)")
    if manifest_size != size:
        raise FaceageError(
            f"{folder} holds {manifest_size} px faces; the prototypes are built from {size} px "
            f"faces (faceage data prepare --size {size})"
        )
    rows = read_faces(folder, "train")
    if not rows:
        raise DatasetError(f"{folder} has no training faces")
    _log(f"{len(rows)} training faces with landmarks")

    points = np.stack([r["landmarks"] for r in rows]).astype(np.float64)
    mean, aligned = mean_shape(points)
    residual = np.sqrt(((aligned - mean) ** 2).sum(-1).mean(-1))
    control = mesh.control_points(mean.astype(np.float32), size)
    triangles = mesh.triangulate(control)
    colour_frame = MeanFrame(mean, triangles, size, COLOUR_GRID)
    # a face whose mesh folds against the mean cannot be shape-normalised: leave it out
    folded = np.array([colour_frame.fold_fraction(p) > FOLD_LIMIT for p in points])
    keep = [r for r, f in zip(rows, folded) if not f]
    _log(
        f"mean shape from {len(rows)} faces; {int(folded.sum())} with folded meshes (> 1.5 % of the area) left out; "
        f"Procrustes residual median {np.median(residual):.2f} px, 99.5% {np.quantile(residual, 0.995):.2f} px"
    )

    cache_dir = run_dir / CACHE
    cache_dir.mkdir(parents=True, exist_ok=True)
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in keep:
        by_shard[r["shard"]].append(r)
    fine_colour: dict[tuple, np.ndarray] = {}
    fine_energy: dict[tuple, np.ndarray] = {}
    fine_count: dict[tuple, int] = defaultdict(int)
    light_by_key: dict[str, np.ndarray] = {}
    feats_by_key: dict[str, np.ndarray] = {}
    shards = sorted(by_shard)
    with ProcessPoolExecutor(
        max_workers=max(1, options.workers),
        mp_context=multiprocessing.get_context("spawn"),  # a forked child can deadlock in a parent's thread pool
        initializer=_init_frames,
        initargs=(mean, triangles, size),
    ) as pool:
        parts = pool.map(_statistics_job, [(cache_dir, folder, shard, by_shard[shard], mean, size) for shard in shards])
        for i, (shard, (part, seconds)) in enumerate(zip(shards, parts)):
            _merge_part(part, fine_colour, fine_energy, fine_count, light_by_key, feats_by_key)
            if progress:
                _log(f"  shard {i + 1}/{len(shards)} {shard}: {len(by_shard[shard])} faces, {seconds:.1f} s")

    aligned_by_key = {r["key"]: a for r, a in zip(rows, aligned)}
    rows_by_cell: dict[tuple, list[dict]] = defaultdict(list)
    for r in keep:
        rows_by_cell[_cell_key(r)].append(r)
    rng = np.random.default_rng(options.seed)

    light_region = oval_region(mean, size, LIGHT_GRID)
    cells: list[dict] = []
    cell_index = np.full((len(GENDERS), len(ETHNICITIES) + 1, len(BINS)), -1, np.int64)

    def add_cell(members: list[tuple], label: dict) -> int:
        count = sum(fine_count[m] for m in members)
        colour = sum(fine_colour[m] for m in members) / count
        energy = sum(fine_energy[m] for m in members) / count
        faces = [r for m in members for r in rows_by_cell[m]]
        shape = np.mean([aligned_by_key[r["key"]] for r in faces], axis=0)
        pick = rng.choice(len(faces), size=min(len(faces), options.max_light_faces), replace=False)
        light = np.stack([light_by_key[faces[p]["key"]].astype(np.float32) for p in sorted(pick)])
        mu = light.mean(axis=0)
        # the basis spans how the cell's faces vary inside the face region: mostly lighting
        centred = ((light - mu) * light_region[None, :, :, None]).reshape(len(light), -1)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = np.zeros((options.light_rank, LIGHT_GRID * LIGHT_GRID * 3), np.float32)
        basis[: min(len(vt), options.light_rank)] = vt[: options.light_rank]
        basis = basis.reshape(-1, LIGHT_GRID, LIGHT_GRID, 3)  # type: ignore[assignment]  # (R, l, l, 3)
        cells.append(
            {
                "shape": shape,
                "colour": colour,
                "energy": energy,
                "light": basis,
                "count": count,
                "mean_age": float(np.mean([r["age"] for r in faces])),
                **label,
            }
        )
        return len(cells) - 1

    borrowed = []
    for g in range(len(GENDERS)):
        for b in range(len(BINS)):
            pooled_members = [(g, e, b) for e in range(len(ETHNICITIES)) if fine_count[(g, e, b)] > 0]
            if not pooled_members:
                # a small folder may miss a bin: borrow the nearest bin of the same gender (reported)
                near = [
                    (abs(b2 - b), b2)
                    for b2 in range(len(BINS))
                    if any(fine_count[(g, e, b2)] for e in range(len(ETHNICITIES)))
                ]
                if not near:
                    raise DatasetError(f"no training faces for {GENDERS[g]}s at all")
                b2 = min(near)[1]
                pooled_members = [(g, e, b2) for e in range(len(ETHNICITIES)) if fine_count[(g, e, b2)] > 0]
                borrowed.append(f"{GENDERS[g]} {BINS[b][0]}-{BINS[b][1]} from {BINS[b2][0]}-{BINS[b2][1]}")
            pooled = add_cell(pooled_members, {"gender": GENDERS[g], "ethnicity": "all", "bin": list(BINS[b])})
            cell_index[g, POOLED, b] = pooled
            for e in range(len(ETHNICITIES)):
                if fine_count[(g, e, b)] >= options.min_cell:
                    cell_index[g, e, b] = add_cell(
                        [(g, e, b)], {"gender": GENDERS[g], "ethnicity": ETHNICITIES[e], "bin": list(BINS[b])}
                    )
                else:
                    cell_index[g, e, b] = pooled
    _log(f"{len(cells)} cells ({sum(c['ethnicity'] != 'all' for c in cells)} by ethnicity)")

    if borrowed:
        _log(f"bins without faces, borrowed from the nearest bin: {'; '.join(borrowed)}")
    centres = np.zeros(len(BINS), np.float32)
    for b, (lo, hi) in enumerate(BINS):
        ages = [r["age"] for r in keep if bin_of(r["age"]) == b]
        centres[b] = float(np.mean(ages)) if ages else (lo + min(hi, 90)) / 2.0

    keys = [r["key"] for r in keep]
    x = np.stack([feats_by_key[k].astype(np.float32) for k in keys])
    clf = _fit_classifier(
        x, np.array([r["gender"] for r in keep]), np.array([r["ethnicity"] for r in keep]), options.pca, options.seed
    )
    region = oval_region(mean, size, COLOUR_GRID)
    fit_limit = float(np.quantile(residual, 0.995))
    elapsed = time.monotonic() - started
    info = {
        "data": str(folder),
        "data_manifest_sha256": sha256_file(folder / "manifest.json"),
        "faces": len(keep),
        "faces_folded": int(folded.sum()),
        "min_cell": options.min_cell,
        "light_rank": options.light_rank,
        "borrowed_bins": borrowed,
        "cells": [
            {k: v for k, v in c.items() if k in ("gender", "ethnicity", "bin", "count", "mean_age")} for c in cells
        ],
        "build_s": round(elapsed, 1),
    }
    protos = PrototypeSet(
        size=size,
        shapes=np.stack([c["shape"] for c in cells]).astype(np.float32),
        colour=np.stack([c["colour"] for c in cells]).astype(np.float32),
        light=np.stack([c["light"] for c in cells]).astype(np.float32),
        energy=np.stack([c["energy"] for c in cells]).astype(np.float32),
        mean_shape=mean.astype(np.float32),
        triangles=triangles,
        region=region,
        cell_index=cell_index,
        centres=centres,
        clf_mean=clf[0],
        clf_components=clf[1],
        clf_weights=clf[2],
        clf_bias=clf[3],
        fit_limit=fit_limit,
        info=info,
    )
    info["classifier"] = _classifier_accuracy(folder, protos, size)
    _log(f"classifier on the validation split: {info['classifier']}")
    if options.detail_faces > 0:
        protos.detail, info["detail"] = sharp_detail(
            folder,
            keep,
            mean,
            triangles,
            size,
            cache_dir,
            faces_per_bin=options.detail_faces,
            rounds=options.detail_rounds,
            workers=options.workers,
            seed=options.seed,
        )
    protos.info["build_s"] = round(time.monotonic() - started, 1)
    return protos


_FRAMES: tuple[MeanFrame, MeanFrame, MeanFrame] | None = None


def _init_frames(mean: np.ndarray, triangles: np.ndarray, size: int) -> None:
    """Worker set-up: the three mean frames, built once per process."""
    global _FRAMES
    _FRAMES = (
        MeanFrame(mean, triangles, size, COLOUR_GRID),
        MeanFrame(mean, triangles, size, ENERGY_GRID),
        MeanFrame(mean, triangles, size, LIGHT_GRID),
    )


def _statistics_job(args: tuple) -> tuple[dict, float]:
    cache_dir, folder, shard, rows, mean, size = args
    assert _FRAMES is not None
    t0 = time.monotonic()
    part = _cached(cache_dir, shard, lambda: _shard_statistics(folder, shard, rows, *_FRAMES, mean, size))
    return part, time.monotonic() - t0


def _merge_part(part: dict, colour: dict, energy: dict, count: dict, light: dict, feats: dict) -> None:
    """Add one shard's sums and per-face samples to the running totals."""
    for j, cell in enumerate(map(tuple, part["cells"].tolist())):
        colour[cell] = colour.get(cell, 0.0) + part["colour"][j]
        energy[cell] = energy.get(cell, 0.0) + part["energy"][j]
        count[cell] += int(part["count"][j])
    for k, key in enumerate(part["keys"].tolist()):
        light[key] = part["light"][k]
        feats[key] = part["features"][k]


def _classifier_accuracy(folder: Path, protos: PrototypeSet, size: int) -> dict:
    rows = read_faces(folder, "val")
    light_frame = MeanFrame(protos.mean_shape, protos.triangles, size, LIGHT_GRID)
    by_key = {r["key"]: r for r in rows}
    feats, gender, ethnicity = [], [], []
    for info in read_index(folder, "val"):
        for key, rgb, _ in iter_shard(folder / info.name):
            r = by_key.get(key)
            if r is None:  # no landmarks for this face
                continue

            light = light_frame.sample(to_ycrcb(np.asarray(rgb)), r["landmarks"])
            feats.append(classifier_features(light, r["landmarks"], protos.mean_shape, size))
            gender.append(r["gender"])
            ethnicity.append(r["ethnicity"])
    if not feats:
        return {}
    pg, pe = protos.classify(np.stack(feats))
    return {
        "val_faces": len(feats),
        "gender_accuracy": round(float((pg.argmax(1) == np.array(gender)).mean()), 3),
        "ethnicity_accuracy": round(float((pe.argmax(1) == np.array(ethnicity)).mean()), 3),
    }
