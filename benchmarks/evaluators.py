"""Benchmark the independent evaluators: speed per face, and the age estimator's error per decade.

    python benchmarks/evaluators.py --raw-utkface 600                  # before prepared data exists
    python benchmarks/evaluators.py --data data/faces128 --raw-utkface 600

Sections of benchmarks/results/evaluators.md (and the same numbers in evaluators.json), both
written atomically:

1. Speed: ms per face on this CPU for each evaluator, batch 1 and batch 32: age and identity on
   a photo with given boxes (batch 32 = one group photo of 32 faces), on aligned 128 px crops, and
   dlib HOG detection per photo. ``--threads`` onnxruntime threads (default 1: shared machine).
2. Age MAE per decade on N raw UTKFace photos (``--raw-utkface N``): up to N/10 per decade
   0s..90+ from faceage's own test split (``faceage.data.split``; the 70s-90+ decades hold fewer),
   boxes from dlib HOG with the whole 200x200 crop as fallback; the whole-crop box is reported too.
3. Age MAE per decade on the test split of a prepared aligned-face folder (``--data DIR``):
   DIR/labels.csv as ``faceage data prepare`` writes it (split, shard, key, age, source; images
   in tar shards), or any labels.csv / .jsonl / .json with ``age`` and a path column (file,
   path, image or filename, relative to DIR). Rows with split == "test" are used when there is a
   split column; MAE is also reported per ``source``/``dataset``.
4. Identity sanity (``--identity N``, default 100 of the same UTKFace sample): impostor acceptance
   over all pairs and acceptance of the same photo shifted 6/4 px and brightened by 20.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceage.atomic import write_text_atomic
from faceage.eval.age_estimator import AgeEstimator
from faceage.eval.identity import ACCEPT_THRESHOLDS, IdentityVerifier

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "evaluators.md"
DECADES = [f"{10 * d}s" for d in range(9)] + ["90+"]
PATH_COLUMNS = ("file", "path", "image", "filename", "relpath")


def decade(age: float) -> str:
    return DECADES[min(int(age) // 10, 9)]


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


# --- data ---------------------------------------------------------------------------------------


def utkface_sample(datasets: Path, n: int) -> tuple[list[tuple[Path, int]], str]:
    """Up to n/10 UTKFace test-split photos per decade (0s … 90+), deterministic.

    The test split is faceage's own (``faceage.data.split``: stratified by source, decade and
    ethnicity, byte-identical duplicates removed), so these are the faces the prepared test split
    holds. Within a decade, photos are taken in split-rank order. Returns (sample, description).
    """
    from faceage.data import datasets as scan
    from faceage.data import split

    records, rejects = scan.scan_utkface(datasets / "utkface" / "images")
    kept, _ = scan.find_duplicates(records)
    assignment = split.assign_splits(kept)
    by_decade: dict[str, list] = defaultdict(list)
    for r in kept:
        if assignment[r.key] == "test":
            by_decade[decade(r.age)].append((split.split_rank(r), r.path, r.age))
    per = max(1, n // len(DECADES))
    sample = []
    for name in DECADES:
        sample += [(p, a) for _, p, a in sorted(by_decade[name])[:per]]
    how = (
        f"UTKFace test split of `faceage.data.split` (salt {split.SALT}; {len(rejects)} malformed names skipped, "
        f"{len(records) - len(kept)} duplicates removed), up to {per} per decade in split-rank order"
    )
    return sample, how


def read_prepared(folder: Path) -> tuple[list[dict], str]:
    """Test-split rows of a prepared folder: dicts with age, source and either shard + key or path."""
    candidates = [folder / n for n in ("labels.csv", "labels.jsonl", "labels.json")]
    found = [p for p in candidates if p.is_file()] or sorted(folder.glob("*.csv")) + sorted(folder.glob("*.json*"))
    if not found:
        raise SystemExit(f"--data {folder}: no labels.csv / labels.jsonl / labels.json found")
    labels = found[0]
    if labels.suffix == ".csv":
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
    elif labels.suffix == ".jsonl":
        rows = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
    else:
        data = json.loads(labels.read_text())
        rows = data if isinstance(data, list) else next(v for v in data.values() if isinstance(v, list))
    if not rows or "age" not in rows[0]:
        raise SystemExit(f"{labels}: need rows with an 'age' column")
    in_shards = "shard" in rows[0] and "key" in rows[0]  # faceage data prepare: JPEGs in tar shards
    path_key = None if in_shards else next((k for k in PATH_COLUMNS if k in rows[0]), None)
    if not in_shards and path_key is None:
        raise SystemExit(
            f"{labels}: need shard + key, or a path column ({', '.join(PATH_COLUMNS)}); got {sorted(rows[0])}"
        )
    note = f"{labels.name}, {len(rows)} rows"
    if "split" in rows[0]:
        rows = [r for r in rows if str(r["split"]).lower() == "test"]
        note += f", {len(rows)} with split=test"
    else:
        note += ", no split column: all rows used"
    source_key = next((k for k in ("source", "dataset") if k in rows[0]), None) if rows else None
    out = []
    for r in rows:
        row = {"age": float(r["age"]), "source": str(r[source_key]) if source_key else "all"}
        if in_shards:
            row.update(shard=folder / str(r["shard"]), key=str(r["key"]))
        else:
            row["path"] = folder / str(r[path_key])
        out.append(row)
    return out, note


def load_prepared_images(rows: list[dict]) -> list[np.ndarray]:
    """Images of the rows, in order (from shards via faceage.data.shards, or from files)."""
    if rows and "shard" in rows[0]:
        from faceage.data.shards import iter_shard

        images: dict[tuple[Path, str], np.ndarray] = {}
        for shard in sorted({r["shard"] for r in rows}):
            wanted = {r["key"] for r in rows if r["shard"] == shard}
            for key, image, _ in iter_shard(shard):
                if key in wanted:
                    images[(shard, key)] = image
        missing = [r["key"] for r in rows if (r["shard"], r["key"]) not in images]
        if missing:
            raise SystemExit(f"{len(missing)} labelled faces are missing from their shards, e.g. {missing[0]}")
        return [images[(r["shard"], r["key"])] for r in rows]
    return [load_rgb(r["path"]) for r in rows]


# --- measurements ---------------------------------------------------------------------------------


def ms_per_face(fn, faces: int, repeats: int) -> dict[str, float]:
    """Median wall-clock and process-CPU milliseconds per face. On a shared machine the CPU time
    is the steadier number: it does not count time spent waiting for a core."""
    fn()  # warm-up (session set-up, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall": 1000 * statistics.median(wall) / faces, "cpu": 1000 * statistics.median(cpu) / faces}


def speed(datasets: Path, threads: int) -> list[dict]:
    sample, _ = utkface_sample(datasets, 600)
    photos = [load_rgb(sample[i][0]) for i in np.linspace(0, len(sample) - 1, 32).astype(int)]  # all decades
    age = AgeEstimator(threads=threads)
    boxes = []
    for p in photos:
        found = age.detect(p)[:1]
        boxes.append(found if len(found) else np.array([[0, 0, p.shape[1], p.shape[0]]], np.float32))
    # A 4 x 8 "group photo" of the 32 faces, with their boxes moved into place.
    group = np.zeros((4 * 200, 8 * 200, 3), np.uint8)
    group_boxes = []
    for i, (p, b) in enumerate(zip(photos, boxes)):
        r, c = divmod(i, 8)
        group[200 * r : 200 * r + 200, 200 * c : 200 * c + 200] = cv2.resize(p, (200, 200))
        group_boxes.append(b[0] * (200 / p.shape[1]) + [200 * c, 200 * r, 200 * c, 200 * r])
    group_boxes = np.array(group_boxes, np.float32)
    crops = [cv2.resize(p, (128, 128), interpolation=cv2.INTER_AREA) for p in photos]
    evaluators = {
        "age (AgeEstimator)": age,
        "identity sface": IdentityVerifier("sface", threads=threads),
        "identity dlib": IdentityVerifier("dlib", threads=threads),
    }
    rows = []
    for name, ev in evaluators.items():
        on_photo = ev.estimate if isinstance(ev, AgeEstimator) else ev.embed
        on_crops = ev.estimate_aligned if isinstance(ev, AgeEstimator) else ev.embed_aligned
        reps1 = 8 if "dlib" in name else 32
        rows.append(
            {
                "evaluator": name,
                "photo + box, batch 1": ms_per_face(lambda f=on_photo: f(photos[0], boxes[0]), 1, reps1),
                "photo + boxes, batch 32": ms_per_face(lambda f=on_photo: f(group, group_boxes), 32, 3),
                "aligned 128, batch 1": ms_per_face(lambda f=on_crops: f(crops[:1]), 1, reps1),
                "aligned 128, batch 32": ms_per_face(lambda f=on_crops: f(crops), 32, 3),
            }
        )
    rows.append(
        {
            "evaluator": "dlib HOG detection (per photo)",
            "photo + box, batch 1": ms_per_face(lambda: age.detect(photos[0]), 1, 16),
            "photo + boxes, batch 32": ms_per_face(lambda: age.detect(group), 32, 2),
            "aligned 128, batch 1": None,
            "aligned 128, batch 32": None,
        }
    )
    return rows


def mae_table(labels: list[float], predictions: list[float], groups: list[str] | None = None) -> list[dict]:
    labels_a, pred_a = np.asarray(labels, float), np.asarray(predictions, float)
    keys = [decade(a) for a in labels_a]
    out = []
    for name in DECADES + ["all"]:
        mask = np.ones(len(keys), bool) if name == "all" else np.array([k == name for k in keys])
        if not mask.any():
            continue
        err = pred_a[mask] - labels_a[mask]
        out.append(
            {
                "decade": name,
                "n": int(mask.sum()),
                "mae": float(np.abs(err).mean()),
                "bias": float(err.mean()),
                "mean_pred": float(pred_a[mask].mean()),
            }
        )
    return out


def raw_utkface(datasets: Path, n: int, threads: int) -> dict:
    sample, how = utkface_sample(datasets, n)
    est = AgeEstimator(threads=threads)
    labels, hog_pred, whole_pred, fallback = [], [], [], 0
    for path, label in sample:
        rgb = load_rgb(path)
        whole = np.array([[0, 0, rgb.shape[1], rgb.shape[0]]], np.float32)
        boxes = est.detect(rgb)
        if len(boxes) == 0:
            fallback += 1
            boxes = whole
        elif len(boxes) > 1:  # several detections on a face crop: keep the largest
            boxes = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))][None]
        labels.append(label)
        hog_pred.append(float(est.estimate(rgb, boxes)[0]))
        whole_pred.append(float(est.estimate(rgb, whole)[0]))
    return {
        "n": len(sample),
        "selection": how,
        "hog_fallback_to_whole_crop": fallback,
        "hog": mae_table(labels, hog_pred),
        "whole_crop": mae_table(labels, whole_pred),
        "sample": [p.name for p, _ in sample],
    }


def prepared(folder: Path, threads: int) -> dict:
    rows, note = read_prepared(folder)
    est = AgeEstimator(threads=threads)
    preds = est.estimate_aligned(load_prepared_images(rows)).tolist()
    by_source: dict[str, list[dict]] = {}
    sources = sorted({r["source"] for r in rows})
    for s in sources if len(sources) > 1 else []:
        idx = [i for i, r in enumerate(rows) if r["source"] == s]
        by_source[s] = mae_table([rows[i]["age"] for i in idx], [preds[i] for i in idx])
    return {
        "folder": str(folder),
        "note": note,
        "all": mae_table([r["age"] for r in rows], preds),
        "by_source": by_source,
    }


def identity_sanity(datasets: Path, n: int, threads: int) -> dict:
    sample, _ = utkface_sample(datasets, 600)
    photos = [load_rgb(sample[i][0]) for i in np.unique(np.linspace(0, len(sample) - 1, n).astype(int))]
    detector = AgeEstimator(threads=threads)
    kept = [(p, detector.detect(p)[:1]) for p in photos]
    kept = [(p, b) for p, b in kept if len(b)]
    matrix = np.float32([[1, 0, 6], [0, 1, 4]])
    out = {"faces": len(kept)}
    for model in ("sface", "dlib"):
        v = IdentityVerifier(model, threads=threads)
        emb = np.concatenate([v.embed(p, b) for p, b in kept])
        aug = []
        for p, _ in kept:
            moved = cv2.warpAffine(p, matrix, (p.shape[1], p.shape[0]), borderMode=cv2.BORDER_REFLECT)
            moved = np.clip(moved.astype(np.int16) + 20, 0, 255).astype(np.uint8)
            found = v.detect(moved)[:1]
            aug.append(v.embed(moved, found) if len(found) else np.full((1, 128), np.nan, np.float32))
        aug = np.concatenate(aug)
        ok = ~np.isnan(aug).any(1)
        same = v.verify(emb[ok], aug[ok])
        rows, cols = np.triu_indices(len(emb), 1)
        other = v.verify(emb[rows], emb[cols])
        out[model] = {
            "threshold": ACCEPT_THRESHOLDS[model],
            "same_accept_rate": float(same.accepted.mean()),
            "same_pairs": int(ok.sum()),
            "same_score_min": float(same.score.min()),
            "impostor_accept_rate": float(other.accepted.mean()),
            "impostor_pairs": int(len(rows)),
            "impostor_score_p99": float(np.percentile(other.score, 99)),
        }
    return out


# --- report ---------------------------------------------------------------------------------------


def fmt(v: object, digits: int = 1) -> str:
    if isinstance(v, dict):
        return f"{v['cpu']:.{digits}f} ({v['wall']:.{digits}f})"
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def mae_markdown(table: list[dict], extra: list[dict] | None = None, extra_name: str = "") -> list[str]:
    head = "| decade | n | MAE | bias (pred − label) | mean predicted |" + (f" {extra_name} |" if extra else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    extra_by = {r["decade"]: r for r in extra or []}
    for r in table:
        cells = [r["decade"], r["n"], fmt(r["mae"]), fmt(r["bias"]), fmt(r["mean_pred"])]
        if extra:
            cells.append(fmt(extra_by[r["decade"]]["mae"]))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def report(results: dict) -> str:
    m = results["meta"]
    lines = [
        "# Independent evaluators: speed and age error",
        "",
        f"Command: `{m['command']}`  ",
        f"When: {m['when']}; machine: {m['machine']}; onnxruntime threads: {m['threads']}; load average at start: {m['load']}.",
        "The machine is shared: times are medians, and the CPU time (process time, all threads) is the steadier",
        "number; the wall-clock time in brackets includes waiting for a core when others are busy.",
        "",
    ]
    if results["speed"]:
        lines += [
            "## Speed: ms per face, CPU time (wall-clock in brackets)",
            "",
            "| evaluator | photo + box, batch 1 | photo + boxes, batch 32 | aligned 128, batch 1 | aligned 128, batch 32 |",
            "|---|---|---|---|---|",
        ]
        for r in results["speed"]:
            lines.append("| " + " | ".join([r["evaluator"]] + [fmt(r[k]) for k in list(r)[1:]]) + " |")
        lines += [
            "",
            "Batch 32 on a photo = one 1600x800 group photo holding 32 faces with their boxes; HOG times are per photo.",
            "Age and identity times include the dlib 5-point landmarks and chip extraction for each face.",
            "",
        ]
    if "raw_utkface" in results:
        u = results["raw_utkface"]
        lines += [
            f"## Age estimator MAE per decade — raw UTKFace ({u['n']} photos)",
            "",
            f"Photos: {u['selection']}. Box: dlib HOG on the 200x200 crop, whole crop when HOG finds nothing "
            f"({u['hog_fallback_to_whole_crop']} photos). Last column: the whole crop as the box.",
            "",
        ]
        lines += mae_markdown(u["hog"], u["whole_crop"], "MAE, whole-crop box")
        lines += ["", "The network's 81 classes end at 80, so 80s and 90+ are under-read by construction.", ""]
    if "prepared" in results:
        p = results["prepared"]
        lines += [
            "## Age estimator MAE per decade — prepared aligned faces, test split",
            "",
            f"`{p['folder']}`: {p['note']}.",
            "",
        ]
        lines += mae_markdown(p["all"])
        for source, table in p["by_source"].items():
            lines += ["", f"### {source}", ""] + mae_markdown(table)
        lines.append("")
    elif results["meta"].get("data_note"):
        lines += ["## Age estimator MAE per decade — prepared aligned faces", "", results["meta"]["data_note"], ""]
    if "identity" in results:
        i = results["identity"]
        lines += [
            f"## Identity sanity ({i['faces']} UTKFace faces; different photos taken as different people, UTKFace has no identity labels)",
            "",
            "| model | threshold | same photo shifted + brightened: accepted | lowest score | impostor pairs accepted | impostor score p99 |",
            "|---|---|---|---|---|---|",
        ]
        for model in ("sface", "dlib"):
            r = i[model]
            lines.append(
                f"| {model} | {r['threshold']} | {100 * r['same_accept_rate']:.1f} % of {r['same_pairs']} | {r['same_score_min']:.3f} "
                f"| {100 * r['impostor_accept_rate']:.2f} % of {r['impostor_pairs']} | {r['impostor_score_p99']:.3f} |"
            )
        lines += ["", "Scores: sface cosine; dlib 1 − L2 distance (accepted when distance < 0.6).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="prepared aligned-face folder with a labels file")
    parser.add_argument(
        "--raw-utkface", type=int, default=0, metavar="N", help="MAE on N stratified raw UTKFace photos"
    )
    parser.add_argument("--identity", type=int, default=100, metavar="N", help="identity sanity on N faces (0: skip)")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="shared datasets folder")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed section")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    results: dict = {
        "meta": {
            "command": "python "
            + " ".join([os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:])),
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "threads": args.threads,
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
    }
    if not args.no_speed:
        print("speed ...", flush=True)
        results["speed"] = speed(args.datasets, args.threads)
    if args.raw_utkface:
        print(f"raw UTKFace, {args.raw_utkface} photos ...", flush=True)
        results["raw_utkface"] = raw_utkface(args.datasets, args.raw_utkface, args.threads)
    if args.data is not None:
        if args.data.is_dir():
            print(f"prepared data {args.data} ...", flush=True)
            results["prepared"] = prepared(args.data, args.threads)
        else:
            results["meta"]["data_note"] = (
                f"`{args.data}` does not exist yet; rerun with `--data` once `faceage data prepare` has written it."
            )
    if args.identity:
        print(f"identity sanity, {args.identity} faces ...", flush=True)
        results["identity"] = identity_sanity(args.datasets, args.identity, args.threads)
    results.setdefault("speed", [])
    text = report(results)
    write_text_atomic(args.out, text)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(results, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
