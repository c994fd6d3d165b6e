"""Outputs beside real photos of the same people at the other age (LAG young/old pairs).

    python benchmarks/lag_pairs.py [--method prototype] [--children 6] [--adults 2] [--set KEY=VALUE]

Per row, one person: the young photo, it aged to the age the independent estimator reads on the
same person's old photo, that real old photo; then the old photo, it rejuvenated to the young
photo's age, and that real young photo. Rows are the first people by name whose young photo reads
as a child (<= 12) and then the first whose does not, so the picture answers the question a
number cannot: does a child aged to 40 look like this adult, and does this adult made 8 look like
this child? Each cell is labelled with the age the estimator reads on it. Writes
``benchmarks/results/lag_pairs_METHOD.png`` (at most 8 people: 16 of LAG's faces).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CELL = 160  # px per face in the picture
LABEL = 22  # px of label strip under each face


def labelled(face: np.ndarray, text: str) -> np.ndarray:
    cell = cv2.resize(face, (CELL, CELL), interpolation=cv2.INTER_AREA)
    strip = np.full((LABEL, CELL, 3), 24, np.uint8)
    cv2.putText(strip, text, (4, LABEL - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([cell, strip], 0)


def main() -> int:
    from faceage.bench.grid import write_png
    from faceage.bench.lag import CHILD_AGE, DEFAULT_LAG, align_people, lag_people
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.faces.pipeline import FacePipeline
    from faceage.methods.base import run_edit
    from faceage.methods.registry import load_method, parse_sets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="prototype")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--lag", type=Path, default=DEFAULT_LAG)
    parser.add_argument("--children", type=int, default=6)
    parser.add_argument("--adults", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    # LAG holds a dictator's portraits; they do not belong in the project's pictures
    parser.add_argument("--skip", action="append", default=["adolf_hitler"], metavar="PERSON")
    args = parser.parse_args()
    if args.children + args.adults > 8:
        parser.error("at most 8 people (16 of LAG's faces) may go into a committed picture")

    method = load_method(args.method, **parse_sets(None, None, tuple(args.sets)))
    estimator = AgeEstimator()
    pipeline = FacePipeline(size=method.face_size)
    wanted = {"child": args.children, "adult": args.adults}
    picked: dict[str, list[np.ndarray]] = {"child": [], "adult": []}
    for person in lag_people(args.lag):
        if not any(wanted.values()):
            break
        if person[0] in args.skip:
            continue
        names, young, old, _ = align_people([person], method.face_size, pipeline)
        if not names:
            continue
        young_age, old_age = estimator.estimate_aligned(np.concatenate([young["images"], old["images"]]))
        kind = "child" if young_age <= CHILD_AGE else "adult"
        if wanted[kind] == 0 or old_age - young_age < 15:
            continue
        wanted[kind] -= 1
        aged = run_edit(method, young["images"], np.array([young_age]), round(float(old_age)), young["landmarks"])
        younger = run_edit(method, old["images"], np.array([old_age]), round(float(young_age)), old["landmarks"])
        aged_age, younger_age = estimator.estimate_aligned(np.concatenate([aged.edited, younger.edited]))
        cells = [
            labelled(young["images"][0], f"young, reads {young_age:.0f}"),
            labelled(aged.edited[0], f"aged to {old_age:.0f}: {aged_age:.0f}"),
            labelled(old["images"][0], f"real old, reads {old_age:.0f}"),
            labelled(old["images"][0], f"old, reads {old_age:.0f}"),
            labelled(younger.edited[0], f"made {young_age:.0f}: {younger_age:.0f}"),
            labelled(young["images"][0], f"real young, reads {young_age:.0f}"),
        ]
        gap = np.full((CELL + LABEL, 8, 3), 255, np.uint8)
        picked[kind].append(np.concatenate([*cells[:3], gap, *cells[3:]], 1))
        print(
            f"{person[0]}: {kind}, young {young_age:.1f} -> {aged_age:.1f} (old {old_age:.1f}); old -> {younger_age:.1f}"
        )
    rows = picked["child"] + picked["adult"]
    if not rows:
        print("no LAG people found", file=sys.stderr)
        return 1
    out = args.out or RESULTS / f"lag_pairs_{args.method}.png"
    write_png(out, np.concatenate(rows, 0))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
