"""Upgrading a prepared folder from before landmarks were stored (data prepare --resume)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from faceage.data.shards import (
    LANDMARKS_KEY,
    MANIFEST,
    _OpenShard,
    decode_landmarks,
    iter_shard,
    read_manifest,
    sha256_file,
)
from faceage.data.upgrade import add_landmarks


def _strip_landmarks(folder) -> dict:
    """Rewrite every shard without landmarks (as an old preparation wrote them); return the old ones."""
    manifest = read_manifest(folder)
    old = {}
    for entry in manifest["shards"]:
        path = folder / entry["name"]
        samples = list(iter_shard(path, decode=False))
        shard = _OpenShard(path, entry["split"], entry["index"])
        for key, jpeg, labels in samples:
            old[key] = (bytes(jpeg), decode_landmarks(labels))
            labels = {k: v for k, v in labels.items() if k != LANDMARKS_KEY}
            shard.add(f"{key}.jpg", bytes(jpeg))
            shard.add(f"{key}.json", json.dumps(labels, sort_keys=True).encode())
            shard.count += 1
        info = shard.finish()
        entry.update({"sha256": info.sha256, "bytes": info.bytes})
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return old


def test_add_landmarks_upgrades_in_place_and_resumes(tiny_faces256, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(tiny_faces256, folder)
    old = _strip_landmarks(folder)
    assert all(
        decode_landmarks(labels) is None
        for e in read_manifest(folder)["shards"]
        for _, _, labels in iter_shard(folder / e["name"], decode=False)
    )

    counts = add_landmarks(folder)
    assert counts["shards_rewritten"] >= 1 and counts["faces_added"] + counts["faces_without"] == len(old)
    assert counts["faces_added"] >= 0.8 * len(old)
    manifest = read_manifest(folder)
    errors = []
    for entry in manifest["shards"]:
        path = folder / entry["name"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
        for key, jpeg, labels in iter_shard(path, decode=False):
            assert bytes(jpeg) == old[key][0]  # the faces themselves are untouched
            points = decode_landmarks(labels)
            if points is not None:
                errors.append(np.abs(points - old[key][1]).mean())
    # the same models on the aligned face find the points a fresh preparation stored (JPEG aside)
    assert np.median(errors) < 3.0

    again = add_landmarks(folder)  # a rerun finds nothing left to do (unless a face had no fit)
    assert again["faces_added"] == 0
