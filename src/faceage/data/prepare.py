"""``faceage data prepare``: scan, de-duplicate, split, align every face, write shards.

Flow: scan both datasets from their labels (no decoding) → drop byte-identical duplicates →
assign train/val/test (``split.assign_splits``) → align each face with
``FacePipeline(size).align_one`` in worker processes → JPEG into ``faces-{split}-NNNN.tar``
shards → ``labels.csv``, ``rejects.csv`` and finally ``manifest.json``.

Faces are processed in the order of a hash of their file names, so every shard is a random mix of
ages and sources, and the same inputs give the same shards. ``limit`` takes the first N in that
order: a random sample over both datasets whose splits are the ones of the full run.

Worker processes are spawned: a script that calls ``prepare(workers>1)`` needs the usual
``if __name__ == "__main__":`` guard.

Resumable: finished shards are final files and alignment rejects go to ``progress.jsonl`` as they
happen, so after a crash or Ctrl-C, ``resume=True`` skips every face already written or rejected
and numbers new shards after the existing ones. Without ``resume`` or ``overwrite`` a non-empty
output folder is refused; ``overwrite`` deletes only files this module writes.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from faceage.atomic import temp_target, write_json_atomic, write_text_atomic
from faceage.data import datasets
from faceage.data import split as splitting
from faceage.data.datasets import Record, Reject
from faceage.data.shards import (
    DEFAULT_MAX_BYTES,
    FORMAT,
    JPEG_QUALITY,
    LABELS_CSV,
    LANDMARKS_KEY,
    MANIFEST,
    SHARD_NAME,
    ShardInfo,
    ShardWriter,
    encode_jpeg,
    encode_landmarks,
    iter_shard,
    read_manifest,
    sha256_file,
)
from faceage.errors import FaceageError, ImageReadError, NoFaceError
from faceage.version import __version__

REJECTS_CSV = "rejects.csv"
PROGRESS = "progress.jsonl"
SETTINGS = "prepare-settings.json"
LABEL_COLUMNS = (
    "key",
    "split",
    "shard",
    "source",
    "file",
    "age",
    "gender",
    "ethnicity",
    "ethnicity_assumed",
    "decade",
    "person_id",
    "score",
    "coverage",
)
_ORDER_SALT = "faceage-order-v1"
# Models the face pipeline reads; their hashes go into the manifest as provenance.
_PIPELINE_MODELS = ("yunet", "face_detector", "face_mesh")


@dataclass
class PrepareReport:
    """What a preparation produced (also in ``manifest.json``)."""

    out_dir: Path
    counts: dict[str, int]
    rejects: dict[str, int]
    shards: list[ShardInfo]
    elapsed_s: float
    scanned: dict[str, int] = field(default_factory=dict)
    resumed: int = 0

    @property
    def bytes_total(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def written(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        scanned = ", ".join(f"{k} {v}" for k, v in self.scanned.items())
        lines = [
            f"prepared {self.written} faces into {self.out_dir} (scanned: {scanned})",
            "  per split: " + ", ".join(f"{s} {self.counts.get(s, 0)}" for s in splitting.SPLITS),
            f"  rejects: {sum(self.rejects.values())}"
            + "".join(f"\n    {reason}: {n}" for reason, n in sorted(self.rejects.items(), key=lambda x: -x[1])),
            f"  shards: {len(self.shards)}, {self.bytes_total / 2**20:.1f} MiB",
            f"  time: {self.elapsed_s / 60:.1f} min"
            + (f" (resumed after {self.resumed} faces)" if self.resumed else ""),
        ]
        return "\n".join(lines)


# --- worker side ------------------------------------------------------------------------------

_PIPELINE = None
_INIT_ERROR = ""


def _init_worker(size: int, in_process: bool = False) -> None:
    """Build this process's face pipeline once. Workers leave Ctrl-C to the parent and use one
    thread each (N workers on N cores beat N processes fighting over N*N threads)."""
    global _PIPELINE, _INIT_ERROR
    if in_process:
        from faceage.faces.pipeline import FacePipeline

        _PIPELINE = FacePipeline(size=size)
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
        from faceage.faces.pipeline import FacePipeline

        _PIPELINE = FacePipeline(size=size)
    except Exception as e:  # noqa: BLE001 - reported by the first task; a raising initializer hangs Pool
        _INIT_ERROR = f"{type(e).__name__}: {e}"


def _coverage(photo_hw: tuple[int, int], matrix, size: int) -> float:
    """Share of the aligned square that shows real photo pixels (the rest is mirror/blur padding)."""
    import cv2
    import numpy as np

    inside = cv2.warpAffine(np.full(photo_hw, 255, np.uint8), matrix, (size, size), flags=cv2.INTER_LINEAR)
    return float(inside.mean() / 255.0)


def _align(task: tuple[int, str, int]) -> tuple[int, bytes | None, dict]:
    """(index, path, size) -> (index, JPEG or None, {score, coverage} or {reason, detail})."""
    from faceage.imageio import load_image

    index, path, size = task
    if _PIPELINE is None:
        raise FaceageError(f"the face pipeline did not start in a worker process: {_INIT_ERROR}")
    try:
        rgb = load_image(path)
    except ImageReadError as e:
        return index, None, {"reason": datasets.UNREADABLE, "detail": str(e)}
    try:
        face = _PIPELINE.align_one(rgb, name=Path(path).name)
    except NoFaceError as e:
        return index, None, {"reason": datasets.NO_FACE, "detail": str(e)}
    except Exception as e:  # noqa: BLE001 - one odd photo must not end an hour-long run
        return index, None, {"reason": datasets.PIPELINE_ERROR, "detail": f"{type(e).__name__}: {e}"}
    image = face.image
    if image.shape != (size, size, 3) or image.dtype.name != "uint8":
        return (
            index,
            None,
            {"reason": datasets.PIPELINE_ERROR, "detail": f"aligned face is {image.shape} {image.dtype}"},
        )
    info: dict[str, float | str] = {
        "score": round(float(face.score), 4),
        "coverage": round(_coverage(rgb.shape[:2], face.matrix, size), 4),
    }
    if face.landmarks is not None:
        info[LANDMARKS_KEY] = encode_landmarks(face.landmarks)
    return index, encode_jpeg(image), info


def _run_tasks(tasks: list[tuple[int, str, int]], size: int, workers: int) -> Generator[tuple, None, None]:
    """Yield _align results in task order, from a pool of spawned workers (or in-process if 1)."""
    if not tasks:
        return
    if workers <= 1:
        _init_worker(size, in_process=True)
        yield from map(_align, tasks)
        return
    # spawn, not fork: the parent may hold torch/OpenCV threads and locks that fork would copy.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(size,)) as pool:
        yield from pool.imap(_align, tasks, chunksize=4)


# --- output folder ----------------------------------------------------------------------------


def _ours(path: Path) -> bool:
    name = temp_target(path.name) or path.name  # a write_*_atomic temp left by a killed run
    if name.endswith(".tmp"):  # a ShardWriter temp
        name = name[:-4]
    return path.is_file() and (
        SHARD_NAME.fullmatch(name) is not None or name in (MANIFEST, LABELS_CSV, REJECTS_CSV, PROGRESS, SETTINGS)
    )


def _clear_out_dir(out_dir: Path) -> None:
    entries = list(out_dir.iterdir())
    foreign = [p.name for p in entries if not _ours(p)]
    if foreign:
        raise FaceageError(
            f"refusing to overwrite {out_dir}: it holds files that data prepare did not write "
            f"({', '.join(sorted(foreign)[:3])})"
        )
    for p in entries:
        p.unlink()


def code_version() -> dict:
    """The faceage version and git commit (and whether the tree was dirty) that made a dataset."""
    info: dict = {"faceage": __version__, "git_commit": None, "git_dirty": None}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10
            )
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _pipeline_settings(size: int) -> dict:
    import inspect

    import faceage.assets as assets
    from faceage.faces.pipeline import FacePipeline

    settings: dict = {"call": "faceage.faces.pipeline.FacePipeline(size).align_one (largest face)", "size": size}
    for name, param in inspect.signature(FacePipeline.__init__).parameters.items():
        if name not in ("self", "size") and isinstance(param.default, (int, float, str, bool, type(None))):
            settings[name] = param.default  # None = the default detector / landmark model
    models = {}
    for name in _PIPELINE_MODELS:
        try:
            path = assets.model_path(name)
            models[name] = {"file": path.name, "sha256": sha256_file(path)}
        except FaceageError as e:
            models[name] = {"error": str(e)}
    settings["models"] = models
    return settings


def _counts(rows: Sequence[dict]) -> dict:
    out: dict = {}
    for s in splitting.SPLITS:
        mine = [r for r in rows if r["split"] == s]
        out[s] = {
            "total": len(mine),
            "decade": {d: n for d in datasets.DECADES if (n := sum(r["decade"] == d for r in mine))},
            "ethnicity": dict(sorted(Counter(r["ethnicity"] for r in mine).items())),
            "source": dict(sorted(Counter(r["source"] for r in mine).items())),
        }
    return out


def _load_previous(out_dir: Path) -> tuple[list[dict], list[ShardInfo], list[Reject]]:
    """Rows and shards already finished in out_dir, and the alignment rejects journalled."""
    rows: list[dict] = []
    shards: list[ShardInfo] = []
    for path in sorted(out_dir.glob("faces-*.tar")):
        m = SHARD_NAME.fullmatch(path.name)
        if m is None:
            continue
        count = 0
        for _, _, labels in iter_shard(path, decode=False):
            rows.append({**labels, "shard": path.name})
            count += 1
        shards.append(ShardInfo(path.name, m["split"], int(m["index"]), count, path.stat().st_size, sha256_file(path)))
    rejects = []
    if (out_dir / PROGRESS).is_file():
        for line in (out_dir / PROGRESS).read_text(encoding="utf-8").splitlines():
            try:
                j = json.loads(line)
                rejects.append(Reject(j["path"], j["reason"], j.get("detail", ""), j.get("source", "")))
            except (ValueError, KeyError):
                continue  # a line cut short by the interruption
    return rows, shards, rejects


def processing_order(records: Sequence[Record], limit: int | None = None) -> list[Record]:
    """Records in the order they are aligned and written: by a hash of source and file name.

    The hash is not the split's (that one puts each stratum's test faces first, so a ``limit``
    sample by it would be all test): the first N are a random sample of every split.
    """
    order = sorted(records, key=lambda r: (splitting.split_rank(r, _ORDER_SALT), r.source, r.file))
    return order if limit is None else order[:limit]


def _open_out_dir(
    out_dir: Path, settings: dict, overwrite: bool, resume: bool
) -> tuple[list[dict], list[ShardInfo], list[Reject]] | None:
    """Make out_dir ready; return what an interrupted run left (resume), or None if it is finished."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceageError(f"output path exists and is not a folder: {out_dir}")
    previous: tuple[list[dict], list[ShardInfo], list[Reject]] = ([], [], [])
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if overwrite:
            _clear_out_dir(out_dir)
        elif resume:
            saved = out_dir / SETTINGS
            if not saved.is_file():
                raise FaceageError(f"cannot resume in {out_dir}: no {SETTINGS} (not made by data prepare)")
            if json.loads(saved.read_text(encoding="utf-8")) != settings:
                raise FaceageError(f"cannot resume in {out_dir}: it was started with other settings (see {SETTINGS})")
            if (out_dir / MANIFEST).is_file():
                return None
            for tmp in out_dir.glob("*.tmp"):
                tmp.unlink()
            previous = _load_previous(out_dir)
        else:
            raise FaceageError(
                f"output folder {out_dir} is not empty; pass --overwrite to replace it or --resume to continue"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SETTINGS, settings)
    return previous


# --- main entry -------------------------------------------------------------------------------


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def prepare(
    utkface_dir: str | Path | None,
    aaf_dir: str | Path | None,
    size: int = 128,
    out_dir: str | Path = "data/faces128",
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_BYTES,
) -> PrepareReport:
    """Align every face of UTKFace and/or AAF into shards in ``out_dir``; see the module doc.

    Raises ``DatasetError`` for a missing/wrong dataset folder and ``FaceageError`` for an output
    folder that is not empty (without ``overwrite``/``resume``) or was made with other settings.
    On Ctrl-C, finished shards and the reject journal stay (resume later), ``.tmp`` shards go.
    """
    started = time.monotonic()
    if utkface_dir is None and aaf_dir is None:
        raise FaceageError("give at least one dataset folder (UTKFace or AAF)")
    if overwrite and resume:
        raise FaceageError("--overwrite and --resume exclude each other")
    if size < 16 or workers < 1 or (limit is not None and limit < 1):
        raise ValueError(f"bad settings: size {size}, workers {workers}, limit {limit}")

    records: list[Record] = []
    rejects: list[Reject] = []
    scanned: dict[str, int] = {}
    for name, folder, scan in (("utkface", utkface_dir, datasets.scan_utkface), ("aaf", aaf_dir, datasets.scan_aaf)):
        if folder is None:
            continue
        found, bad = scan(folder)
        records += found
        rejects += bad
        scanned[name] = len(found) + len(bad)
    datasets.check_unique_keys(records)

    out_dir = Path(out_dir)
    settings = {
        "size": size,
        "utkface": str(Path(utkface_dir).resolve()) if utkface_dir is not None else None,
        "aaf": str(Path(aaf_dir).resolve()) if aaf_dir is not None else None,
        "limit": limit,
        "max_shard_bytes": max_shard_bytes,
        "split": {
            "salt": splitting.SALT,
            "test_fraction": splitting.TEST_FRACTION,
            "val_fraction": splitting.VAL_FRACTION,
            "strata": ["source", "decade", "ethnicity"],
        },
        "jpeg": {"quality": JPEG_QUALITY, "subsampling": "4:4:4"},
    }
    previous = _open_out_dir(out_dir, settings, overwrite, resume)
    if previous is None:
        from faceage.data.upgrade import add_landmarks

        # a finished folder from before landmarks were stored is upgraded in place
        upgraded = add_landmarks(out_dir, log=(lambda m: _log(progress, m)))
        if upgraded["shards_rewritten"]:
            _log(
                progress,
                f"added landmarks to {upgraded['faces_added']} faces in {upgraded['shards_rewritten']} "
                f"shards ({upgraded['faces_without']} without a landmark fit)",
            )
        return _report_from_manifest(out_dir, started)
    # provenance is taken now: it describes the code that runs, and an import problem surfaces
    # before an hour of alignment rather than after it
    provenance = {"code_version": code_version(), "pipeline": _pipeline_settings(size)}
    previous_rows, previous_shards, previous_rejects = previous

    kept, duplicates = datasets.find_duplicates(records)
    rejects += duplicates
    assignment = splitting.assign_splits(kept)
    order = processing_order(kept, limit)
    if limit is not None:
        in_sample = {str(r.path) for r in order}
        rejects = [j for j in rejects if j.path in in_sample]  # only rejects among the sample count
    done = {row["key"] for row in previous_rows}
    done_paths = {j.path for j in previous_rejects}
    todo = [r for r in order if r.key not in done and str(r.path) not in done_paths]
    rejects += previous_rejects
    _log(
        progress,
        f"scanned {sum(scanned.values())} files: {len(kept)} usable after "
        f"{len(rejects) - len(previous_rejects)} label/duplicate rejects; "
        f"{len(todo)} to align"
        + (f" ({len(done) + len(done_paths)} done before)" if previous_rows or previous_rejects else ""),
    )

    start_index: dict[str, int] = {}
    for shard in previous_shards:
        start_index[shard.split] = max(start_index.get(shard.split, 0), shard.index + 1)
    writer = ShardWriter(out_dir, max_bytes=max_shard_bytes, start_index=start_index)
    rows, new_rejects = _align_into_shards(todo, assignment, size, workers, writer, out_dir / PROGRESS, progress)
    rows = previous_rows + rows
    rejects += new_rejects
    shards = sorted(previous_shards + writer.shards, key=lambda s: (splitting.SPLITS.index(s.split), s.index))

    elapsed = time.monotonic() - started
    resumed = len(done) + len(done_paths)
    _write_tables(out_dir, rows, rejects)
    manifest = _manifest(settings, provenance, scanned, rows, rejects, shards, elapsed, resumed)
    write_json_atomic(out_dir / MANIFEST, manifest)
    (out_dir / PROGRESS).unlink(missing_ok=True)
    rows_split = Counter(row["split"] for row in rows)
    return PrepareReport(
        out_dir,
        {s: rows_split.get(s, 0) for s in splitting.SPLITS},
        manifest["rejects"]["by_reason"],
        shards,
        elapsed,
        scanned,
        resumed,
    )


def _align_into_shards(
    todo: list[Record],
    assignment: dict[str, str],
    size: int,
    workers: int,
    writer: ShardWriter,
    journal_path: Path,
    progress: bool,
) -> tuple[list[dict], list[Reject]]:
    """Align each record (in order) and write it to its split's shard; journal every reject."""
    from tqdm import tqdm

    rows: list[dict] = []
    rejects: list[Reject] = []
    tasks = [(i, str(r.path), size) for i, r in enumerate(todo)]
    results = _run_tasks(tasks, size, workers)
    bar = tqdm(
        total=len(tasks),
        disable=not progress,
        unit="face",
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )
    try:
        with open(journal_path, "a", encoding="utf-8") as journal:
            for index, jpeg, info in results:
                r = todo[index]
                if jpeg is None:
                    rejects.append(Reject(str(r.path), info["reason"], info["detail"], r.source))
                    journal.write(json.dumps({"key": r.key, "path": str(r.path), **info, "source": r.source}) + "\n")
                    journal.flush()
                    bar.set_postfix(rejected=len(rejects), refresh=False)
                else:
                    split = assignment[r.key]
                    labels = {**r.labels(), "split": split, **info}
                    rows.append({**labels, "shard": writer.write(r.key, split, jpeg, labels)})
                bar.update(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        results.close()  # stops the worker pool now, also on Ctrl-C
        bar.close()
    return rows, rejects


def _manifest(
    settings: dict,
    provenance: dict,
    scanned: dict,
    rows: list[dict],
    rejects: list[Reject],
    shards: list[ShardInfo],
    elapsed: float,
    resumed: int,
) -> dict:
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": provenance["code_version"],
        "size": settings["size"],
        "pipeline": provenance["pipeline"],
        "settings": settings,
        "label_conventions": {
            "gender": "0 male, 1 female (AAF labels.csv male/female; AAF splits/*.txt 1 male, 0 female)",
            "ethnicity": list(datasets.ETHNICITIES),
            "ethnicity_assumed": "true for AAF: no per-photo label, the dataset is mostly East Asian",
            "decades": list(datasets.DECADES),
            "person_id": "AAF only (one photo per id); UTKFace has none",
        },
        "scanned": scanned,
        "counts": {"total": len(rows), "by_split": _counts(rows)},
        "rejects": {
            "total": len(rejects),
            "by_reason": dict(sorted(Counter(j.reason for j in rejects).items())),
            "by_source": {
                src: dict(sorted(Counter(j.reason for j in rejects if j.source == src).items()))
                for src in datasets.SOURCES
            },
        },
        "shards": [s.to_dict() for s in shards],
        "bytes_total": sum(s.bytes for s in shards),
        "elapsed_s": round(elapsed, 1),
        "resumed_from": resumed,
    }


def _write_tables(out_dir: Path, rows: list[dict], rejects: list[Reject]) -> None:
    for name, header, table in (
        (LABELS_CSV, LABEL_COLUMNS, [[row.get(c) for c in LABEL_COLUMNS] for row in rows]),
        (REJECTS_CSV, ("path", "reason", "detail"), [[j.path, j.reason, j.detail] for j in rejects]),
    ):
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(header)
        w.writerows(table)
        write_text_atomic(out_dir / name, text.getvalue())


def _report_from_manifest(out_dir: Path, started: float) -> PrepareReport:
    m = read_manifest(out_dir)
    shards = [ShardInfo(**s) for s in m["shards"]]
    counts = {s: m["counts"]["by_split"][s]["total"] for s in splitting.SPLITS}
    return PrepareReport(
        out_dir,
        counts,
        m["rejects"]["by_reason"],
        shards,
        time.monotonic() - started,
        m.get("scanned", {}),
        m["counts"]["total"],
    )
