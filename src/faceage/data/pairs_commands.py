"""``faceage data pairs``: the default method's own outputs on training faces, stored as shards.

A learned step that corrects or imitates the ``prototype`` method (the refiner, a distilled
student) trains on what that method makes: for a seeded, decade-balanced draw of the training
split, each face is aged by the shipped method to a random target over the whole lifespan (both
directions, at least ``MIN_GAP`` years from the face's labelled age), and the result is written
as a ``faceage-shards-v1`` folder whose JPEG is the method's edited face (aligned, the data's size)
and whose labels say how it was made:

- ``source_key`` (the face in ``--data``), ``age`` (its labelled age, the method's source age),
  ``target_age``, ``gender``, ``ethnicity``;
- ``flow``: the method's shape change, a backward displacement in aligned pixels of the full face
  size, stored at ``FLOW_SIDE`` x ``FLOW_SIDE`` (``decode_array(labels["flow"], (S, S, 2))``);
- ``mask``: where the change is pasted, same side; ``strength`` and the loop's reading.

It lives with the commands because it runs a method (an upper layer) over data shards. Resumable:
finished shards are kept on an interruption and their faces skipped by ``--resume``; the manifest,
written last, lists them all with the rate in pairs per hour.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from faceage.cli_options import sigterm_as_interrupt

if TYPE_CHECKING:  # numpy loads inside the functions: `faceage --help` imports this module
    import numpy as np

MIN_GAP = 8.0  # years between the labelled age and a drawn target
LIFESPAN = (1.0, 85.0)  # targets are drawn uniformly in this range
FLOW_SIDE = 64  # the stored flow and mask are this many pixels wide (the flow is smooth: a mesh warp)
SHARD_BYTES = 8 * 2**20  # small shards: an interruption loses at most one
PAIRS_FORMAT = "faceage-teacher-pairs-v1"

_METHOD = None
_INIT_ERROR = ""


def draw_pairs(ages: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(face indices, target ages): ``count`` faces drawn without replacement, decade-balanced
    (children and the old as often as the 20-40s that fill the datasets), each with a target at
    least ``MIN_GAP`` years from its age."""
    import numpy as np

    from faceage.data.balance import balanced_weights

    rng = np.random.default_rng([seed, 0x9A125])
    count = min(count, len(ages))
    chosen = rng.choice(len(ages), size=count, replace=False, p=balanced_weights(ages, 0.5))
    targets = rng.uniform(*LIFESPAN, size=count)
    for _ in range(100):  # redraw the targets too near their face's age
        near = np.abs(targets - ages[chosen]) < MIN_GAP
        if not near.any():
            break
        targets[near] = rng.uniform(*LIFESPAN, size=int(near.sum()))
    return chosen, np.round(targets, 1)


def _init_worker(method: str, weights: str | None, options: dict, in_process: bool = False) -> None:
    global _METHOD, _INIT_ERROR
    if not in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
    try:
        import cv2
        import torch

        if not in_process:
            cv2.setNumThreads(1)
            torch.set_num_threads(1)
        from faceage.methods.registry import load_method

        _METHOD = load_method(method, "cpu", weights, **options)
    except Exception as e:  # noqa: BLE001 - reported by the first task; a raising initializer hangs Pool
        if in_process:
            raise
        _INIT_ERROR = f"{type(e).__name__}: {e}"


def _make_pair(task: tuple[str, bytes, dict, float]) -> tuple[str, bytes | None, dict]:
    """(key, face JPEG, labels, target) -> (key, edited JPEG or None, labels or {error})."""
    import cv2
    import numpy as np

    from faceage.data.shards import decode_jpeg, decode_landmarks, encode_array, encode_jpeg
    from faceage.methods.base import run_edit

    key, jpeg, labels, target = task
    if _METHOD is None:
        raise click.ClickException(f"the method did not start in a worker process: {_INIT_ERROR}")
    face = decode_jpeg(jpeg)
    size = _METHOD.face_size
    if face.shape[:2] != (size, size):
        return key, None, {"error": f"face is {face.shape[1]} px, the method takes {size}"}
    points = decode_landmarks(labels)
    if points is None or points.shape != (478, 2):
        return key, None, {"error": "no landmarks"}
    source = float(labels["age"])
    try:
        edit = run_edit(_METHOD, face[None], np.array([source]), target, landmarks=points[None])
    except Exception as e:  # noqa: BLE001 - one odd face must not end an hour-long run
        return key, None, {"error": f"{type(e).__name__}: {e}"}
    stats = edit.stats[0] if edit.stats else {}
    out = {
        "source_key": key,
        "age": source,
        "target_age": float(target),
        "gender": labels.get("gender"),
        "ethnicity": labels.get("ethnicity"),
        "strength": stats.get("strength"),
        "loop_age": stats.get("loop_age"),
        "warning": edit.warnings[0] if edit.warnings else None,
    }
    if edit.flow is not None:
        flow = cv2.resize(edit.flow[0], (FLOW_SIDE, FLOW_SIDE), interpolation=cv2.INTER_AREA)
        out["flow"] = encode_array(flow)
    if edit.mask is not None:
        out["mask"] = encode_array(cv2.resize(edit.mask[0], (FLOW_SIDE, FLOW_SIDE), interpolation=cv2.INTER_AREA))
    return key, encode_jpeg(edit.edited[0]), out


def _results(
    tasks: list, method: str, weights: str | None, options: dict, workers: int
) -> Iterator[tuple[str, bytes | None, dict]]:
    if workers <= 1:
        _init_worker(method, weights, options, in_process=True)
        yield from map(_make_pair, tasks)
        return
    ctx = multiprocessing.get_context("spawn")  # the parent holds torch and OpenCV threads
    with ctx.Pool(workers, initializer=_init_worker, initargs=(method, weights, options)) as pool:
        yield from pool.imap(_make_pair, tasks, chunksize=2)


def _finished(out: Path) -> tuple[set[str], int]:
    """Keys already in finished shards of ``out`` and the next shard index (``.tmp`` ones go)."""
    from faceage.data.shards import index_shard

    for tmp in out.glob("*.tar.tmp"):
        tmp.unlink()
    shards = sorted(out.glob("faces-train-*.tar"))
    done: set[str] = set()
    for path in shards:
        done.update(lab.get("key", "") for lab in index_shard(path)[1])
    return done, len(shards)


def make_pairs(
    data: Path,
    out: Path,
    count: int,
    seed: int = 0,
    workers: int = 2,
    method: str = "prototype",
    options: dict | None = None,
    weights: str | Path | None = None,
    resume: bool = False,
    echo=click.echo,  # noqa: ANN001 - a print-like callable
) -> dict:
    """Write ``count`` pairs into ``out``; return the manifest. See the module docstring."""
    import numpy as np

    from faceage.data.shards import (
        FORMAT,
        MANIFEST,
        ShardInfo,
        ShardReader,
        ShardWriter,
        find_shards,
        index_shard,
        read_manifest,
        sha256_file,
        shard_name,
        write_json_atomic,
    )

    options = dict(options or {})
    if out.exists() and any(out.iterdir()) and not resume:
        raise click.ClickException(f"{out} is not empty: pass --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).is_file():
        manifest = read_manifest(out)
        echo(f"{out} is finished ({manifest.get('pairs')} pairs)")
        return manifest
    labels = [lab for path in find_shards(data, "train") for lab in index_shard(path)[1]]
    ages = np.array([float(lab.get("age", np.nan)) for lab in labels])
    usable = np.flatnonzero(np.isfinite(ages))
    chosen, targets = draw_pairs(ages[usable], count, seed)
    wanted = {labels[usable[i]]["key"]: float(t) for i, t in zip(chosen, targets)}
    done, next_index = _finished(out)
    todo = {k: t for k, t in wanted.items() if k not in done}
    echo(f"{len(wanted)} pairs wanted, {len(done)} already made, {len(todo)} to make with {workers} worker(s)")
    tasks = [
        (key, jpeg, labs, todo[key]) for key, jpeg, labs in ShardReader(data, "train", decode=False) if key in todo
    ]
    t0, made, failed = time.perf_counter(), 0, 0
    interrupted = False
    with ShardWriter(out, max_bytes=SHARD_BYTES, start_index={"train": next_index}) as writer:
        try:
            for key, jpeg, labs in _results(tasks, method, None if weights is None else str(weights), options, workers):
                if jpeg is None:
                    failed += 1
                    echo(f"  skipped {key}: {labs.get('error')}")
                    continue
                writer.write(key, "train", jpeg, labs)
                made += 1
                if made % 200 == 0:
                    rate = made / (time.perf_counter() - t0) * 3600
                    echo(f"  {made}/{len(tasks)} pairs, {rate:.0f} per hour")
        except KeyboardInterrupt:
            interrupted = True
    seconds = time.perf_counter() - t0
    rate = made / seconds * 3600 if made else 0.0
    if interrupted:
        echo(f"interrupted after {made} pairs ({rate:.0f} per hour): finished shards kept; continue with --resume")
        raise SystemExit(130)
    shards = []
    for index in range(len(list(out.glob("faces-train-*.tar")))):
        path = out / shard_name("train", index)
        shards.append(
            ShardInfo(path.name, "train", index, len(index_shard(path)[1]), path.stat().st_size, sha256_file(path))
        )
    from faceage.data.prepare import code_version
    from faceage.methods.registry import load_method

    teacher = load_method(method, "cpu", weights, **options).describe()
    manifest = {
        "format": FORMAT,
        "kind": PAIRS_FORMAT,
        "shards": [s.to_dict() for s in shards],
        "pairs": sum(s.count for s in shards),
        "failed": failed,
        "data": str(data),
        "data_manifest_sha256": sha256_file(Path(data) / MANIFEST),
        "teacher": teacher,
        "code_version": code_version(),  # the teacher's code: pairs from an older one are remade
        "seed": seed,
        "count": count,
        "flow_side": FLOW_SIDE,
        "targets": list(LIFESPAN),
        "min_gap": MIN_GAP,
        "last_run": {"pairs": made, "seconds": round(seconds, 1), "pairs_per_hour": round(rate), "workers": workers},
    }
    write_json_atomic(out / MANIFEST, manifest)
    echo(f"{manifest['pairs']} pairs in {len(shards)} shards ({rate:.0f} per hour this run, {failed} failed)")
    return manifest


@click.command("pairs")
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Prepared faces (faceage data prepare) at the method's face size.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (never inside git).",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=6000,
    show_default=True,
    help="How many faces to age (one random target each).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Draw of faces and targets.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker processes (1 = in this process).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
def pairs_command(data: Path, out: Path, count: int, seed: int, workers: int, resume: bool) -> None:
    """Age training faces with the default method: teacher pairs for the refiner and the student."""
    with sigterm_as_interrupt():
        make_pairs(data, out, count, seed=seed, workers=workers, resume=resume)
