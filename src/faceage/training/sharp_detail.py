"""Sharp signed detail per age bin x gender, by collection flow (part of ``faceage train prototypes``).

Averaging faces that are only aligned by their landmarks blurs what makes them look their age:
folds, bags and lines sit a few pixels apart in every face and cancel out. Following
illumination-aware age progression (Kemelmacher-Shlizerman, Suwajanakorn & Seitz, CVPR 2014),
every face of a bin is pulled onto the bin's average by dense optical flow, the average is taken
again, and this is repeated ("collection flow"); what is left sharp is the detail those faces
share. Only its fine, signed part (``fine_part``) is kept: the coarse shading is the colour
prototypes' job.

Steps:
1. up to ``faces_per_bin`` training faces per bin x gender (a fixed random sample), each warped to
   the global mean shape at full resolution (luminance, uint8), cached per shard (resumable);
2. per bin x gender: the average; ``rounds`` times: DIS optical flow from the average to every
   face (on locally contrast-normalised images, so lighting does not drive it), each face warped
   back along its flow, the average taken again;
3. the fine part of the final average, inside the mean face oval.

No single face's detail can be read from a result averaged over hundreds.
"""

from __future__ import annotations

import io
import multiprocessing
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from faceage.data.shards import decode_jpeg, iter_shard
from faceage.models.prototype_frame import DETAIL_GRID, MeanFrame, fine_part, oval_region, to_ycrcb
from faceage.models.prototypes import BINS, GENDERS, bin_of

FLOW_LIMIT = 10.0  # px: larger flow vectors are clipped (a face that far from the average is not helped)
FLOW_SMOOTH = 1.5  # px: Gaussian on each flow field, so the warp follows features, not noise
NORMALISE_SIGMA = 10.0  # px: local mean and contrast removed before the flow is computed


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pick_faces(rows: list[dict], faces_per_bin: int, seed: int) -> dict[tuple[int, int], list[dict]]:
    """{(gender, bin): rows}: a fixed random sample of at most ``faces_per_bin`` faces each."""
    by_cell: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in rows:
        by_cell[(r["gender"], bin_of(r["age"]))].append(r)
    rng = np.random.default_rng(seed)
    out = {}
    for cell, members in sorted(by_cell.items()):
        members = sorted(members, key=lambda r: r["key"])
        take = rng.choice(len(members), size=min(len(members), faces_per_bin), replace=False)
        out[cell] = [members[i] for i in sorted(take)]
    return out


def _shard_lumas(folder: Path, shard: str, rows: list[dict], frame: MeanFrame) -> dict[str, np.ndarray]:
    """{key: (d, d) uint8 luminance in the mean frame} for the picked faces of one shard."""
    wanted = {r["key"]: r for r in rows}
    out = {}
    for key, jpeg, _ in iter_shard(folder / shard, decode=False):
        row = wanted.get(key)
        if row is None:
            continue
        luma = to_ycrcb(decode_jpeg(bytes(jpeg)))[..., 0]
        out[key] = np.clip(np.round(frame.sample(luma, row["landmarks"])[..., 0]), 0, 255).astype(np.uint8)
    return out


def _cached_lumas(cache_dir: Path, folder: Path, shard: str, rows: list[dict], frame: MeanFrame) -> dict:
    from faceage.atomic import write_bytes_atomic

    path = cache_dir / f"detail-{shard}-d{DETAIL_GRID}.npz"
    keys = sorted(r["key"] for r in rows)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                have = {k: z[k] for k in z.files}
            if all(k in have for k in keys):
                return {k: have[k] for k in keys}
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)  # cut short, or made for another sample: compute again
    result = _shard_lumas(folder, shard, rows, frame)
    buf = io.BytesIO()
    np.savez(buf, **result)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    write_bytes_atomic(path, buf.getvalue())
    return result


def _normalised(luma: np.ndarray) -> np.ndarray:
    """uint8 image with the local mean and contrast removed (what DIS flow is computed on)."""
    x = luma.astype(np.float32)
    centred = (x - cv2.GaussianBlur(x, (0, 0), NORMALISE_SIGMA)).astype(np.float32)
    spread = np.sqrt(cv2.GaussianBlur(centred**2, (0, 0), NORMALISE_SIGMA)) + 4.0
    return np.clip(128.0 + 40.0 * centred / spread, 0, 255).astype(np.uint8)


def collection_average(faces: np.ndarray, rounds: int) -> np.ndarray:
    """(d, d) float32 average of ``faces`` (N, d, d) uint8 after ``rounds`` of collection flow."""
    stack = faces.astype(np.float32)
    average = stack.mean(axis=0)
    if rounds == 0 or len(faces) < 2:
        return average
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    d = faces.shape[1]
    grid = np.indices((d, d), np.float32)[::-1].transpose(1, 2, 0)
    for _ in range(rounds):
        reference = _normalised(average)
        total = np.zeros((d, d), np.float32)
        for face in faces:
            flow = dis.calc(reference, _normalised(face), None)
            flow = cv2.GaussianBlur(np.clip(flow, -FLOW_LIMIT, FLOW_LIMIT), (0, 0), FLOW_SMOOTH)
            at = grid + flow
            total += cv2.remap(
                face.astype(np.float32), at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        average = total / len(faces)
    return average


def _cell_detail(args: tuple) -> tuple[tuple[int, int], np.ndarray, float]:
    cell, faces, rounds = args
    started = time.monotonic()
    average = collection_average(faces, rounds)
    return cell, fine_part(average, average.shape[0]), time.monotonic() - started


def sharp_detail(
    folder: Path,
    rows: list[dict],
    mean_shape: np.ndarray,
    triangles: np.ndarray,
    size: int,
    cache_dir: Path,
    faces_per_bin: int = 400,
    rounds: int = 3,
    workers: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """(G, B, d, d) signed detail per gender x bin, and a report (faces per cell, seconds)."""
    started = time.monotonic()
    frame = MeanFrame(mean_shape, triangles, size, DETAIL_GRID)
    picked = pick_faces(rows, faces_per_bin, seed)
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for members in picked.values():
        for r in members:
            by_shard[r["shard"]].append(r)
    lumas: dict[str, np.ndarray] = {}
    for shard in sorted(by_shard):
        lumas.update(_cached_lumas(cache_dir, folder, shard, by_shard[shard], frame))
    _log(f"detail: {len(lumas)} faces warped to the mean shape ({time.monotonic() - started:.0f} s)")

    region = oval_region(mean_shape, size, DETAIL_GRID)
    detail = np.zeros((len(GENDERS), len(BINS), DETAIL_GRID, DETAIL_GRID), np.float32)
    jobs = [(cell, np.stack([lumas[r["key"]] for r in members]), rounds) for cell, members in picked.items()]
    report: dict = {"faces_per_bin": faces_per_bin, "rounds": rounds, "cells": {}}
    with ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")
    ) as pool:  # not fork: see prototype_builder.py
        for (g, b), fine, seconds in pool.map(_cell_detail, jobs):
            detail[g, b] = fine * region
            report["cells"][f"{GENDERS[g]} {BINS[b][0]}-{BINS[b][1]}"] = len(picked[(g, b)])
            _log(f"  detail {GENDERS[g]} {BINS[b][0]}-{BINS[b][1]}: {len(picked[(g, b)])} faces, {seconds:.0f} s")
    # a bin without faces borrows the nearest bin of the same gender (as the cells do)
    for g in range(len(GENDERS)):
        have = [b for b in range(len(BINS)) if (g, b) in picked]
        for b in range(len(BINS)):
            if (g, b) not in picked and have:
                detail[g, b] = detail[g, min(have, key=lambda h: abs(h - b))]
    report["seconds"] = round(time.monotonic() - started, 1)
    return detail, report
