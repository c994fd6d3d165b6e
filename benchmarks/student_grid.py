"""The student beside its teacher, as a picture: what the distillation kept and what it lost.

    python benchmarks/student_grid.py [--weights PATH] [--data data/faces256] [--targets 5 35 75] [--out PATH]

Rows: the aging benchmark's 16 grid faces of the test split (4 of them children). Per target age:
the teacher (the default prototype method, target loop on), the full student (256 px, all
channels) and its smallest sub-network (64 px, a quarter of the channels; its change upsampled on
the full face, as the method pastes it). Writes benchmarks/results/student_grid.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    from faceage.bench.aging import grid_faces
    from faceage.bench.grid import labelled_columns, write_png
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.methods.base import run_edit
    from faceage.methods.registry import load_method

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="student weights (default: the shipped ones)")
    parser.add_argument("--data", type=Path, default=Path("data/faces256"))
    parser.add_argument("--targets", type=float, nargs="+", default=[5.0, 35.0, 75.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "student_grid.png")
    args = parser.parse_args()

    teacher = load_method("prototype")
    full = load_method("student", weights=args.weights)
    smallest_size = min(full.net.cfg.resolutions)
    smallest = load_method("student", weights=args.weights, resolution=smallest_size, ratio=min(full.net.cfg.ratios))
    faces, points = grid_faces(args.data, "test", args.seed, teacher)
    ages = AgeEstimator().estimate_aligned(faces)
    columns, labels = [faces], ["input"]
    for t in args.targets:
        outputs = [run_edit(m, faces, ages, t, points).edited for m in (teacher, full, smallest)]
        columns += outputs
        labels += [f"{t:g} teacher", f"{t:g} student", f"{t:g} {smallest_size}px"]
        for name, out in zip(("student", "smallest"), outputs[1:]):
            gap = np.abs(out.astype(int) - outputs[0]).mean()
            print(f"target {t:g}: {name} differs from the teacher by {gap:.2f} levels on average")
    write_png(args.out, labelled_columns(labels, columns, font_scale=0.4))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
