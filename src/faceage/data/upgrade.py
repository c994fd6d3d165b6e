"""Upgrade a prepared folder made before landmarks were stored: add each face's 478 landmarks.

``faceage data prepare ... --resume`` on a finished folder calls ``add_landmarks``. Each shard
whose samples lack landmarks is rewritten (same order, same JPEG bytes, labels plus
``landmarks``) into a temporary file and renamed over the old one, then the manifest's sha256
and byte counts are updated, so an interrupted upgrade leaves whole shards and a rerun continues
with the shards still missing landmarks. The landmarks come from the same detector and landmark
model as a new preparation, run on the aligned face itself (its pixels are its coordinates).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from faceage.atomic import write_json_atomic
from faceage.data.shards import (
    LANDMARKS_KEY,
    MANIFEST,
    ShardInfo,
    _OpenShard,
    decode_jpeg,
    encode_landmarks,
    iter_shard,
    read_manifest,
)


def add_landmarks(folder: str | Path, pipeline=None, log: Callable[[str], None] | None = None) -> dict:  # noqa: ANN001
    """Add landmarks to every sample of ``folder`` that has none; returns counts
    ``{"shards_rewritten", "faces_added", "faces_without"}`` (without: no landmark fit found)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if pipeline is None:
        from faceage.faces.pipeline import FacePipeline

        pipeline = FacePipeline(size=int(manifest.get("size", 128)))
    counts = {"shards_rewritten": 0, "faces_added": 0, "faces_without": 0}
    for entry in manifest["shards"]:
        path = folder / entry["name"]
        samples = list(iter_shard(path, decode=False))
        if all(LANDMARKS_KEY in labels for _, _, labels in samples):
            continue
        shard = _OpenShard(path, entry["split"], int(entry["index"]))
        try:
            for key, jpeg, labels in samples:
                if LANDMARKS_KEY not in labels:
                    points = _landmarks_of(decode_jpeg(bytes(jpeg)), pipeline)
                    if points is None:
                        counts["faces_without"] += 1
                    else:
                        labels = {**labels, LANDMARKS_KEY: encode_landmarks(points)}
                        counts["faces_added"] += 1
                shard.add(f"{key}.jpg", bytes(jpeg))
                shard.add(f"{key}.json", json.dumps(labels, sort_keys=True).encode())
                shard.count += 1
            info: ShardInfo = shard.finish()
        except BaseException:
            shard.abort()
            raise
        entry.update({"bytes": info.bytes, "sha256": info.sha256, "count": info.count})
        write_json_atomic(folder / MANIFEST, manifest)
        counts["shards_rewritten"] += 1
        if log:
            log(f"  {entry['name']}: landmarks added ({counts['faces_added']} faces so far)")
    if counts["shards_rewritten"]:
        manifest["bytes_total"] = sum(s["bytes"] for s in manifest["shards"])
        write_json_atomic(folder / MANIFEST, manifest)
    return counts


def _landmarks_of(face, pipeline):  # noqa: ANN001, ANN202 - (S, S, 3) uint8 aligned face -> (478, 2) or None
    model, detector = getattr(pipeline, "landmarks", None), getattr(pipeline, "detector", None)
    if model is None or detector is None:  # a pipeline without dense landmarks cannot add them
        return None
    found = detector.detect(face)
    if not found:
        return None
    return model.predict(face, found[0])
