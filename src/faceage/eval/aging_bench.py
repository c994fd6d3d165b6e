"""The aging benchmark (DESIGN "How we measure"): any method, the test split, independent judges.

For each test face and each target group 0, 10, 20, 30, 50 (decades; the ideal predicted mean is
the group centre 5, 15, 25, 35, 55) the method ages the aligned face; the *independent* age
estimator (``faceage.eval.age``, never used in training) reads the result, and the independent
verifier (SFace; the training identity term used AlexNet features, a different network) decides
whether input and output are the same person at its standard threshold. Reported: predicted age
mean ± std and verification rate per target group, overall and per ethnicity group, and the
method's ms per face. The source age given to the method is the independent estimate of the
input, exactly as ``faceage age`` does on a photo.

The faces are a seeded random sample of the split (``limit``), so reruns are comparable; all are
already aligned by ``faceage data prepare``, so detection and paste-back are not part of these
numbers (their cost is in ``benchmarks/pipeline.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceage.methods.base import AgingMethod

TARGET_GROUPS = {0: 5.0, 10: 15.0, 20: 25.0, 30: 35.0, 50: 55.0}  # decade -> centre (the ideal mean)
# GLS-Age (*Face aging by global–local co-embedding and semantic-mask-driven editing*, Tables 1 and 2) on the same target groups, for reference in the report.
ANCHOR_AGE = {0: (7.01, 2.01), 10: (15.22, 3.04), 20: (23.33, 2.74), 30: (33.29, 3.17), 50: (56.25, 7.10)}
ANCHOR_IDENTITY = {0: 75.5, 10: 87.8, 20: 98.6, 30: 98.8, 50: 97.2}


def read_faces(data: str | Path, split: str, limit: int | None, seed: int) -> dict:
    """A seeded random sample of a split: images (N, S, S, 3) uint8, ages, ethnicities, keys."""
    from faceage.data.shards import ShardReader
    from faceage.errors import DatasetError

    keys, images, ages, ethnicities = [], [], [], []
    for key, image, labels in ShardReader(data, split=split):
        keys.append(key)
        images.append(image)
        ages.append(float(labels["age"]))
        ethnicities.append(str(labels.get("ethnicity", "unknown")))
    if not keys:
        raise DatasetError(f"split '{split}' of {data} holds no faces")
    order = np.random.default_rng(seed).permutation(len(keys))
    if limit is not None:
        order = np.sort(order[:limit])
    return {"keys": [keys[i] for i in order], "images": np.stack([images[i] for i in order]),
            "ages": np.asarray(ages, np.float32)[order], "ethnicities": np.asarray(ethnicities)[order]}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def _summary(pred: np.ndarray, accepted: np.ndarray, similarity: np.ndarray) -> dict:
    return {"n": int(len(pred)), "age_mean": float(pred.mean()), "age_std": float(pred.std()),
            "identity_rate": float(accepted.mean() * 100), "similarity_mean": float(similarity.mean())}


def run_aging_benchmark(method: AgingMethod, data: str | Path, split: str = "test", limit: int | None = 500,
                        seed: int = 0, batch: int = 32, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark; returns a JSON-able dict (see ``format_report``)."""
    from faceage.eval.age import AgeEstimator
    from faceage.eval.identity import IdentityVerifier

    faces = read_faces(data, split, limit, seed)
    stored = faces["images"]
    inputs = _resize(stored, method.face_size)
    estimator, verifier = AgeEstimator(), IdentityVerifier("sface")
    source_ages = estimator.estimate_aligned(stored)
    source_emb = verifier.embed_aligned(stored)
    log(f"{len(stored)} {split} faces; independent source age MAE vs labels "
        f"{np.abs(source_ages - faces['ages']).mean():.2f}")
    groups, method_seconds = {}, 0.0
    for decade, centre in TARGET_GROUPS.items():
        edited = []
        for i in range(0, len(inputs), batch):
            t0 = time.perf_counter()
            out = method.edit(inputs[i : i + batch], source_ages[i : i + batch], centre).edited
            method_seconds += time.perf_counter() - t0
            edited.append(_resize(out, stored.shape[1]))
        edited = np.concatenate(edited)
        pred = estimator.estimate_aligned(edited)
        result = verifier.verify(source_emb, verifier.embed_aligned(edited))
        accepted, similarity = np.asarray(result.accepted), np.asarray(result.score)
        row = _summary(pred, accepted, similarity)
        row["centre"] = centre
        row["ethnicity"] = {e: _summary(pred[m], accepted[m], similarity[m])
                            for e in sorted(set(faces["ethnicities"])) if (m := faces["ethnicities"] == e).any()}
        groups[str(decade)] = row
        log(f"target {decade}s (centre {centre:g}): age {row['age_mean']:.2f} ± {row['age_std']:.2f}, "
            f"identity {row['identity_rate']:.1f} %")
    return {"method": method.describe(), "split": split, "faces": len(stored), "seed": seed,
            "source_age_mean": float(source_ages.mean()), "source_age_std": float(source_ages.std()), "groups": groups,
            "method_ms_per_face": 1000 * method_seconds / (len(inputs) * len(TARGET_GROUPS))}


def format_report(result: dict, command: str, machine: str) -> str:
    """Markdown section for ``benchmarks/results/aging.md`` (one section per method)."""
    name = result["method"]["method"]
    lines = [f"## {name}", "", f"Command: `{command}`  ", f"Machine: {machine}  ",
             f"Method: `{result['method']}`  ",
             f"{result['faces']} faces of the {result['split']} split (seed {result['seed']}); "
             f"method alone {result['method_ms_per_face']:.1f} ms per aligned face.",
             f"Unedited input faces read {result['source_age_mean']:.2f}"
             + (f" ± {result['source_age_std']:.2f}" if "source_age_std" in result else "")
             + " years (the independent estimate a method that changes nothing would score in every row).", "",
             "| target | ideal | predicted age (mean ± std) | off by | identity verified (SFace) | mean similarity | GLS-Age anchor age / identity |",
             "|---|---|---|---|---|---|---|"]
    for decade, row in result["groups"].items():
        a_mean, a_std = ANCHOR_AGE[int(decade)]
        lines.append(f"| {decade}s | {row['centre']:g} | {row['age_mean']:.2f} ± {row['age_std']:.2f} | "
                     f"{row['age_mean'] - row['centre']:+.2f} | {row['identity_rate']:.1f} % | "
                     f"{row['similarity_mean']:.3f} | {a_mean} ± {a_std} / {ANCHOR_IDENTITY[int(decade)]} % |")
    ethnicities = sorted({e for row in result["groups"].values() for e in row["ethnicity"]})
    lines += ["", "Per ethnicity (predicted age mean ± std / identity verified):", "",
              "| ethnicity | n | " + " | ".join(f"{d}s" for d in result["groups"]) + " |",
              "|---|---|" + "---|" * len(result["groups"])]
    for e in ethnicities:
        cells, n = [], 0
        for row in result["groups"].values():
            s = row["ethnicity"].get(e)
            n = s["n"] if s else n
            cells.append(f"{s['age_mean']:.1f} ± {s['age_std']:.1f} / {s['identity_rate']:.0f} %" if s else "-")
        lines.append(f"| {e} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_results_file(path: str | Path, section: str, title: str = "# Aging benchmark") -> None:
    """Replace (or append) this method's ``## name`` section in the markdown results file."""
    from faceage.atomic import write_text_atomic

    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else f"{title}\n\n"
    head = section.splitlines()[0]
    blocks = text.split("\n## ")
    kept = [blocks[0].rstrip() + "\n"] + ["## " + b.rstrip() + "\n" for b in blocks[1:] if not ("## " + b).startswith(head)]
    kept.append(section)
    write_text_atomic(path, "\n".join(kept))
