"""What the refiner adds, as a picture: the prototype method with and without it, and its change.

    python benchmarks/refiner_grid.py [--data data/faces256] [--targets 5 75] [--out PATH]

Rows: the aging benchmark's 16 grid faces of the test split (4 of them children). Per target age:
the prototype method (v2, target loop on), the same with ``refine=on`` (the loop picks the same
strength: it reads unrefined candidates), and the refiner's luma change x4 on grey (lighter: it
brightened; darker: it darkened). Writes benchmarks/results/refiner_grid.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TILE = 128


def change_picture(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Luma of ``after`` minus ``before``, x4 around mid grey."""
    y0 = cv2.cvtColor(before, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
    y1 = cv2.cvtColor(after, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
    grey = np.clip(128 + 4 * (y1 - y0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def main() -> int:
    from faceage.bench.aging import grid_faces
    from faceage.bench.grid import labelled_columns, write_png
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.methods.base import run_edit
    from faceage.methods.registry import load_method

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/faces256"))
    parser.add_argument("--targets", type=float, nargs="+", default=[5.0, 75.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "refiner_grid.png")
    args = parser.parse_args()

    plain = load_method("prototype")
    refined = load_method("prototype", refine=True)
    faces, points = grid_faces(args.data, "test", args.seed, plain)
    ages = AgeEstimator().estimate_aligned(faces)
    columns, labels = [faces], ["input"]
    for t in args.targets:
        a = run_edit(plain, faces, ages, t, points).edited
        b = run_edit(refined, faces, ages, t, points).edited
        columns += [a, b, np.stack([change_picture(x, y) for x, y in zip(a, b)])]
        labels += [f"{t:g}", f"{t:g} refined", "change x4"]
        print(f"target {t:g}: mean |luma change| {np.abs(columns[-1][..., 0].astype(int) - 128).mean() / 4:.2f} levels")
    write_png(args.out, labelled_columns(labels, columns, TILE, font_scale=0.45))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
