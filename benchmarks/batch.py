"""Batch throughput of `faceage age` with --engine local and --engine ray on the same photos, and
of the Ray engine against the number of worker processes on a two-node Ray cluster on this machine.

Run: `nice -n 10 python benchmarks/batch.py [--photos 500]` → benchmarks/results/batch.md
The photos are real face crops (UTKFace, 200x200) copied from ../shared/datasets into a temporary
folder (never into the repository). Each run is the whole command, as a user runs it: start-up,
loading the method (once per Ray actor), aging, writing, summary. faces/s = faces aged / wall time.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faceage.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the two-node cluster of the Ray engine's tests

from ray_cluster import ENV, Cluster  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "batch.md"
UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface" / "images"
FACEAGE = Path(sys.executable).with_name("faceage")


def make_photos(folder: Path, count: int) -> None:
    names = sorted(p.name for p in UTKFACE.glob("*.jpg"))
    step = max(1, len(names) // count)
    for i, name in enumerate(names[::step][:count]):
        shutil.copy(UTKFACE / name, folder / f"p{i:04d}.jpg")


def run(label: str, photos: Path, out: Path, extra: list[str], env: dict, common: list[str]) -> dict:
    """One whole `faceage age` command: wall seconds, faces aged (rows of its summary), failures."""
    command = [str(FACEAGE), "age", str(photos), "-o", str(out), *common, *extra]
    print(f"{label}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}): {done.stderr[-2000:]}")
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        faces = sum(1 for _ in csv.DictReader(handle))
    failed = sum(1 for line in done.stderr.splitlines() if line.startswith("error: "))
    result = {"label": label, "seconds": seconds, "faces": faces, "failed": failed, "rate": faces / seconds}
    print(f"  {seconds:.1f} s, {faces} faces, {failed} failed, {result['rate']:.2f} faces/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=500, help="Photos of the local against Ray runs.")
    parser.add_argument(
        "--scaling-photos", type=int, default=150, help="The first N of them for the 1 against 2 workers runs."
    )
    parser.add_argument("--method", default=None, help="Aging method (default: faceage's default).")
    args = parser.parse_args()
    common = ["--to", "70", "--no-eval"] + (["--method", args.method] if args.method else [])
    work = Path(tempfile.mkdtemp(prefix="faceage-batch-bench-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, args.photos)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        one_thread = {**env, "OMP_NUM_THREADS": "1"}  # what Ray gives each 1-CPU worker
        rows = [
            run("local", photos, work / "local", ["--engine", "local"], env, common),
            run("ray, started for the run (2 workers)", photos, work / "ray", ["--engine", "ray"], env, common),
            run("local, OMP_NUM_THREADS=1", photos, work / "local1", ["--engine", "local"], one_thread, common),
        ]
        subset = work / "subset"
        subset.mkdir()
        for photo in sorted(photos.iterdir())[: args.scaling_photos]:
            os.link(photo, subset / photo.name)
        cluster = Cluster()
        try:
            cluster.start()
            for workers in (1, 2):
                extra = ["--engine", "ray", "--address", cluster.address, "--workers", str(workers)]
                label = f"ray, 2-node cluster, {workers} worker{'s' if workers > 1 else ''}"
                rows.append(run(label, subset, work / f"cluster{workers}", extra, {**env, **ENV}, common))
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(rows, args, common)


def write_report(rows: list[dict], args: argparse.Namespace, common: list[str]) -> None:
    local, started = rows[0], rows[1]
    lines = [
        "# Batch aging: --engine local and --engine ray",
        "",
        f"Command: `nice -n 10 python benchmarks/batch.py --photos {args.photos} --scaling-photos {args.scaling_photos}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared: the figures were "
        "taken with other jobs running on the same cores (the lead's and other helpers' builds), so they "
        "move by 10-20 % between runs.  ",
        f"Photos: {args.photos} real face crops (UTKFace, 200x200 JPEG), one face each (the 2-node cluster "
        f"runs: the first {args.scaling_photos} of them, to fit the machine's time); every run: "
        f"`faceage age PHOTOS -o OUT {' '.join(common)}` plus the engine options below, timed as a whole "
        "(start-up, loading the method, aging, writing, summary).",
        "",
        "| run | wall s | faces | failed | faces/s |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['label']} | {r['seconds']:.1f} | {r['faces']} | {r['failed']} | {r['rate']:.2f} |" for r in rows]
    ratio = started["rate"] / local["rate"]
    lines += [
        "",
        f"Ray on one machine against local: {ratio:.2f}x the throughput "
        f"({'overhead' if ratio < 1 else 'gain'} {abs(1 - ratio) * 100:.0f} %).",
    ]
    threads = rows[2]
    lines.append(
        f"Local with one torch/OpenMP thread, as Ray runs each 1-CPU worker: {threads['rate']:.2f} faces/s; "
        f"Ray against it: {started['rate'] / threads['rate']:.2f}x."
    )
    if len(rows) >= 5:
        one, two = rows[3], rows[4]
        lines.append(
            f"Two-node cluster, 2 workers against 1: {two['rate'] / one['rate']:.2f}x "
            "(2 cores in all, shared with other jobs: two workers cannot double it here)."
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    previous = RESULTS.read_text().split("\n## ", 1) if RESULTS.is_file() else []
    if len(previous) == 2:  # keep the hand-written sections after the table
        text += "\n## " + previous[1]
    write_text_atomic(RESULTS, text)
    print(text)


if __name__ == "__main__":
    main()
