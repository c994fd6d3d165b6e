"""Face-pipeline speed on this machine: ms per face for each stage, on a 1 MP and a 12 MP photo.

Run: `python benchmarks/pipeline.py [--repeats 15]` → benchmarks/results/pipeline.md
Targets (issue 2): detection + landmarks + alignment + masks <= 60 ms per face on a 1 MP photo;
paste-back <= 40 ms per face on a 12 MP photo.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from _timing import median_ms
from faceage.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.md"


def photo_of_megapixels(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale the example portrait to fill a width x height photo (reflect-padded at the sides)."""
    side = min(width, height)
    face = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC)
    pad_x, pad_y = width - side, height - side
    return cv2.copyMakeBorder(face, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2, cv2.BORDER_REFLECT)


def stage_times(photo: np.ndarray, size: int, repeats: int) -> dict[str, float]:
    from faceage.faces.align import alignment_matrix, warp_face
    from faceage.faces.detect import FaceDetector
    from faceage.faces.landmarks import LandmarkModel
    from faceage.faces.masks import face_masks
    from faceage.faces.paste import paste_back
    from faceage.faces.pipeline import FacePipeline
    from faceage.faces.segment import PersonSegmenter

    detector, landmarker, segmenter = FaceDetector(), LandmarkModel(), PersonSegmenter()
    faces = detector.detect(photo)
    if len(faces) != 1:
        raise SystemExit(f"benchmark photo should hold exactly one face, found {len(faces)}")
    face = faces[0]
    aligned = FacePipeline(size=size, detector=detector, landmarks=landmarker).process(photo)[0]
    matrix = alignment_matrix(face.points, size)
    edited = np.ascontiguousarray(aligned.image[:, ::-1])  # any change: the paste must do real work
    return {
        "detect": median_ms(lambda: detector.detect(photo), repeats),
        "landmarks": median_ms(lambda: landmarker.predict(photo, face), repeats),
        "align": median_ms(lambda: warp_face(photo, matrix, size), repeats),
        "masks": median_ms(
            lambda: face_masks(aligned.image, aligned.landmarks, segmenter.predict(aligned.image)), repeats
        ),
        "paste_back": median_ms(lambda: paste_back(photo, edited, aligned.matrix), repeats),
    }


def evaluator_times(photo: np.ndarray, repeats: int) -> dict[str, float]:
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.eval.identity import IdentityVerifier
    from faceage.faces.detect import FaceDetector

    boxes = [FaceDetector().detect(photo)[0].box]
    estimator = AgeEstimator()
    times = {"age estimate": median_ms(lambda: estimator.estimate(photo, boxes), repeats)}
    for model in ("sface", "dlib"):
        verifier = IdentityVerifier(model=model)
        times[f"identity embed ({model})"] = median_ms(lambda v=verifier: v.embed(photo, boxes), repeats)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=128, help="aligned face size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from faceage.assets import EXAMPLE_PHOTO
    from faceage.imageio import load_image

    example = load_image(EXAMPLE_PHOTO)
    photos = {
        "1 MP (1152x864)": photo_of_megapixels(example, 1152, 864),
        "12 MP (4000x3000)": photo_of_megapixels(example, 4000, 3000),
    }
    rows = {name: stage_times(photo, args.size, args.repeats) for name, photo in photos.items()}
    evaluators = evaluator_times(photos["1 MP (1152x864)"], args.repeats)

    one_mp = rows["1 MP (1152x864)"]
    front = one_mp["detect"] + one_mp["landmarks"] + one_mp["align"] + one_mp["masks"]
    paste_12 = rows["12 MP (4000x3000)"]["paste_back"]
    stages = list(one_mp)
    lines = [
        "# Face pipeline speed",
        "",
        f"Command: `python benchmarks/pipeline.py --repeats {args.repeats} --size {args.size}`; "
        f"median ms per face over {args.repeats} runs after warm-up, one face per photo.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}; aligned size {args.size} px.",
        "",
        "| photo | " + " | ".join(stages) + " |",
        "|---|" + "---:|" * len(stages),
    ]
    for name, times in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{times[s]:.1f}" for s in stages) + " |")
    lines += [
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        f"| detect + landmarks + align + masks, 1 MP, <= 60 ms | {front:.1f} ms | {'yes' if front <= 60 else 'no'} |",
        f"| paste-back, 12 MP, <= 40 ms | {paste_12:.1f} ms | {'yes' if paste_12 <= 40 else 'no'} |",
        "",
        "## Evaluators (ms per face, 1 MP photo, face box given)",
        "",
        "| evaluator | ms |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in evaluators.items()]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
