"""``faceage train prototypes``: build, calibrate and (optionally) ship the age prototypes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # numpy is imported where it is used: `faceage --help` stays fast
    import numpy as np

from faceage.cli_options import CONTEXT_SETTINGS, data_option, out_folder_option

CALIBRATION_TARGETS = (2.0, 5.0, 10.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0)


@click.command("prototypes", context_settings=CONTEXT_SETTINGS)
@data_option("Folder from `faceage data prepare --size 256` (its samples carry landmarks).", must_exist=False)
@out_folder_option(
    "Run folder: per-shard caches (resume) and prototypes.safetensors/.json.", default=Path("runs/prototypes")
)
@click.option("--size", type=click.IntRange(64, 1024), default=256, help="Face size of the prepared folder.")
@click.option(
    "--min-cell",
    type=click.IntRange(10),
    default=80,
    help="Faces an ethnicity cell needs; fewer: the pooled cell of that age and gender is used.",
)
@click.option(
    "--calibration-faces",
    type=click.IntRange(0),
    default=48,
    help="Validation faces for the strength calibration with faceage's own age regressor (0: none).",
)
@click.option(
    "--recalibrate",
    is_flag=True,
    help="Do not build: load --out/prototypes.safetensors and only fit the strength calibration again.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=2, help="Processes for the per-shard and detail steps.")
@click.option(
    "--detail-faces",
    type=click.IntRange(0),
    default=400,
    help="Faces per age bin x gender for the sharp detail (collection flow); 0: none.",
)
@click.option("--detail-rounds", type=click.IntRange(0, 10), default=3, help="Collection-flow rounds.")
@click.option("--ship", is_flag=True, help="Copy the result into faceage/weights and update the manifest.")
def prototypes_command(
    data: Path,
    out: Path,
    size: int,
    min_cell: int,
    calibration_faces: int,
    recalibrate: bool,
    workers: int,
    detail_faces: int,
    detail_rounds: int,
    ship: bool,
) -> None:
    """Build the age prototypes (shape, relit colour, band energies per age bin x gender x ethnicity,
    sharp signed detail per age bin x gender).

    Resumable: per-shard statistics are cached in --out, so a rerun after an interruption only
    does the shards that were not finished.
    """
    from faceage.models.prototypes import PrototypeSet
    from faceage.training.prototype_builder import BuildOptions, build

    if recalibrate:
        protos = PrototypeSet.load(out / "prototypes.safetensors")
    else:
        options = BuildOptions(
            size=size, min_cell=min_cell, workers=workers, detail_faces=detail_faces, detail_rounds=detail_rounds
        )
        protos = build(data, out, options)
    if calibration_faces:
        t0 = time.monotonic()
        protos = _calibrate(protos, data, calibration_faces)
        protos.info["calibration"]["seconds"] = round(time.monotonic() - t0, 1)
    path = protos.save(out / "prototypes.safetensors")
    click.echo(
        f"prototypes: {len(protos.info['cells'])} cells from {protos.info['faces']} faces -> {path} "
        f"({path.stat().st_size / 2**20:.1f} MiB, built in {protos.info['build_s'] / 60:.1f} min)"
    )
    if protos.info.get("calibration"):
        gains = ", ".join(f"{t:g}: {g:g}" for t, g in zip(protos.calib_targets, protos.calib_gains))
        click.echo(f"calibrated strength gains per target: {gains}")
    if ship:
        _ship(path)


def _calibrate(protos, data: Path, n: int):  # noqa: ANN001, ANN202
    """Fit the per-target gains on ``n`` validation faces spread over all ages."""
    import numpy as np

    from faceage.data.shards import decode_landmarks, iter_shard, read_index
    from faceage.methods.prototype import PrototypeMethod

    pool = []
    for info in read_index(data, "val"):
        for _, rgb, labels in iter_shard(data / info.name):
            pool.append((rgb, decode_landmarks(labels), float(labels["age"])))
    pool.sort(key=lambda item: item[2])
    pick = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
    faces = np.stack([pool[i][0] for i in pick])
    points = np.stack([pool[i][1] for i in pick])
    ages = np.array([pool[i][2] for i in pick])
    method = PrototypeMethod(protos, calibrated=False, loop=False)
    targets, gains, table = calibrate(method, faces, points, ages, CALIBRATION_TARGETS)
    protos.calib_targets, protos.calib_gains = targets, gains
    protos.info["calibration"] = {
        "faces": len(faces),
        "source_ages": [float(ages.min()), float(ages.max())],
        "judge": "faceage's own age regressor (not the independent estimator)",
        "trials": table,
    }
    return protos


def calibrate(
    method,  # noqa: ANN001 - a PrototypeMethod with loop=False
    faces: np.ndarray,
    landmarks: np.ndarray,
    source_ages: np.ndarray,
    targets: tuple[float, ...],
    gains: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0),
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Per target age, the open-loop strength gain whose results faceage's *own* age regressor
    reads closest to the target (never the independent estimator, which only judges); the
    closed-loop method chooses per face instead. Returns (targets, gains, every trial)."""
    import numpy as np

    from faceage.methods.prototype.loop import OwnJudges

    judges = OwnJudges()
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
                ages = judges.ages(list(edited))
                trials.append((g, float(ages.mean())))
                table.append({"target": t, "gain": g, "regressor_mean": round(float(ages.mean()), 2)})
            # the smallest gain within a year of the best: stronger edits cost identity
            errors = [abs(m - t) for _, m in trials]
            lowest = min(errors)
            best.append(next(g for (g, _), e in zip(trials, errors) if e <= lowest + 1.0))
    finally:
        method.strength, method.calibrated = saved
    return np.asarray(targets, np.float32), np.asarray(best, np.float32), table


def _ship(path: Path) -> None:
    """Copy prototypes(.safetensors/.json) into faceage/weights and record them in the manifest."""
    import shutil

    from faceage.assets import WEIGHTS_DIR
    from faceage.atomic import write_json_atomic
    from faceage.checksum import sha256_file

    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    manifest_path = WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for source in (path, path.with_suffix(".json")):
        target = WEIGHTS_DIR / source.name
        shutil.copyfile(source, target)
        manifest[source.name] = {
            "sha256": sha256_file(target),
            "kind": "ours",
            "use": "age prototypes of the default `prototype` aging method",
            "training_data": f"faceage data prepare --size 256 train split (UTKFace + All-Age-Faces), "
            f"{meta.get('faces')} faces; research use only",
            "build": f"faceage train prototypes, {meta.get('build_s', 0) / 60:.1f} min on 2 CPU cores",
            "cells": len(meta.get("cells", [])),
            "classifier": meta.get("classifier", {}),
        }
    write_json_atomic(manifest_path, manifest)
    click.echo(f"shipped into {WEIGHTS_DIR} (manifest updated)")
