"""Speed of the default `prototype` method on this machine: per face, at 1 MP and 12 MP, with its
target loop (the default) and without it (``loop=off``), and at 1 MP with the refiner (``refine=on``).

    python benchmarks/prototype_speed.py [--repeats 7]

Writes benchmarks/results/prototype_speed.md. "End to end" is what `faceage age` does for one
face without the report's evaluation: detect, landmarks, align, estimate the source age, edit,
warp the photo and paste the change. "Method alone" is ``PrototypeMethod.edit`` on one aligned
face. "With evaluation" adds the reached-age estimate and the two SFace embeddings of the report.
"Refiner alone" is the refiner step on one rendered 256 px face.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms  # noqa: E402
from faceage.assets import EXAMPLE_PHOTO  # noqa: E402
from faceage.atomic import write_text_atomic  # noqa: E402
from faceage.imageio import load_image  # noqa: E402
from faceage.machine import cpu_name  # noqa: E402


def photo_of(megapixels: float) -> np.ndarray:
    """The example photo (512 x 512) enlarged to about ``megapixels``, 4:3, face centred."""
    rgb = load_image(EXAMPLE_PHOTO)
    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    width = int(round(height * 4 / 3))
    face = cv2.resize(rgb, (height, height), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((height, width, 3), 200, np.uint8)
    x0 = (width - height) // 2
    canvas[:, x0 : x0 + height] = face
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "prototype_speed.md")
    args = parser.parse_args()
    from faceage.methods.engine import Ager
    from faceage.methods.registry import load_method

    rows = []
    for loop, refine, sizes in (("on", False, (1.0, 12.0)), ("off", False, (1.0, 12.0)), ("on", True, (1.0,))):
        fast = Ager(load_method("prototype", loop=loop, refine=refine), evaluate=False)
        full = Ager(load_method("prototype", loop=loop, refine=refine))
        for mp in sizes:
            photo = photo_of(mp)
            end_to_end = median_ms(lambda photo=photo, fast=fast: fast.age(photo, to=70), args.repeats)
            evaluated = median_ms(lambda photo=photo, full=full: full.age(photo, to=70), max(3, args.repeats // 2))
            faces = fast.pipeline.process(photo)
            crops = np.stack([f.image for f in faces])
            points = np.stack([f.landmarks for f in faces])
            alone = median_ms(
                lambda crops=crops, points=points, fast=fast: fast.method.edit(crops, np.array([30.0]), 70.0, points),
                args.repeats,
            )
            rows.append((loop, refine, mp, photo.shape, end_to_end, alone, evaluated))
            print(
                f"loop {loop}, refine {refine}, {mp:g} MP {photo.shape[1]}x{photo.shape[0]}: end to end {end_to_end:.0f} ms, "
                f"method alone {alone:.0f} ms, with evaluation {evaluated:.0f} ms",
                flush=True,
            )
    lines = [
        "# prototype method: speed per face",
        "",
        f"Command: `python benchmarks/prototype_speed.py --repeats {args.repeats}`  ",
        f"Machine: {cpu_name()}, 2 cores, torch threads default; median of the repeats, one face, target 70.",
        "",
        "| target loop | refiner | photo | end to end (detect ... paste) | method alone | end to end with "
        "evaluation (reached age + SFace) |",
        "|---|---|---|---|---|---|",
    ]
    for loop, refine, mp, shape, e2e, alone, evaluated in rows:
        lines.append(
            f"| {loop} | {'on' if refine else 'off'} | {mp:g} MP ({shape[1]}x{shape[0]}) | {e2e:.0f} ms | "
            f"{alone:.0f} ms | {evaluated:.0f} ms |"
        )
    step = load_method("prototype", refine=True).refiner
    face = photo_of(1.0)[:256, :256].copy()
    mask = np.ones((256, 256), np.float32)
    refiner_ms = median_ms(lambda: step(face, face, mask, 30.0, 70.0), args.repeats * 3)
    lines += [
        "",
        f"Refiner alone (one 256 px face, run at 128 px): {refiner_ms:.1f} ms.",
        "",
        "Targets: end to end <= 300 ms per face on a 1 MP photo with the loop on; the refiner <= 40 ms.",
    ]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
