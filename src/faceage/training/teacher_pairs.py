"""Teacher pairs in memory: what ``faceage data pairs`` stored, with the faces they came from.

The refiner and the student both learn from the default method's own outputs. A pairs folder
holds the aged faces (JPEG) and, in their labels, the source face's key, the ages, the shape flow
and the paste mask; the unaged faces stay in the prepared data folder the pairs were made from.
``load_teacher_pairs`` reads the pairs, then only the source faces they need from ``--data``,
all at one size, and caches the arrays in the run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceage.errors import DatasetError
from faceage.training.age_trainer import resize_uint8

CACHE_VERSION = 2


@dataclass
class TeacherPairs:
    """N pairs at one size S: the teacher's aged faces and the unaged inputs (N, S, S, 3) uint8, its
    backward flows (N, F, F, 2) float32 in pixels of a ``flow_unit``-px face, paste masks (N, S, S)
    float32, ages (N,) float32 years and the pairs' keys."""

    aged: np.ndarray
    faces: np.ndarray
    flow: np.ndarray
    mask: np.ndarray
    source: np.ndarray
    target: np.ndarray
    keys: list[str]  # the pair's key is its source face's key
    flow_unit: float

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, index: np.ndarray) -> TeacherPairs:
        """The pairs at ``index``, in that order."""
        return TeacherPairs(
            self.aged[index],
            self.faces[index],
            self.flow[index],
            self.mask[index],
            self.source[index],
            self.target[index],
            [self.keys[i] for i in index],
            self.flow_unit,
        )

    def warped(self) -> np.ndarray:
        """The inputs warped by the teacher's flows: pixel-aligned with ``aged``."""
        return np.stack([warp_by_flow(f, fl, self.flow_unit) for f, fl in zip(self.faces, self.flow)])


def warp_by_flow(face: np.ndarray, flow: np.ndarray, flow_unit: float) -> np.ndarray:
    """``face`` (S, S, 3) warped by a stored backward ``flow`` (F, F, 2) given in pixels of a face
    ``flow_unit`` wide: output pixel q shows the input at q + flow(q)."""
    s = face.shape[0]
    f = cv2.resize(flow, (s, s), interpolation=cv2.INTER_LINEAR) * (s / flow_unit)
    grid = np.mgrid[0:s, 0:s][::-1].transpose(1, 2, 0).astype(np.float32)
    m = grid + f
    return cv2.remap(face, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """The training loaders' resize (antialiased bilinear), so pairs and real faces match."""
    return resize_uint8(np.array(image)[None], size)[0]


def load_teacher_pairs(
    pairs: str | Path, data: str | Path, size: int, cache_dir: Path | None = None, split: str = "train"
) -> TeacherPairs:
    """Every pair of ``pairs`` whose source face is in ``data``'s ``split``, at ``size`` px."""
    from faceage.data.shards import ShardReader, decode_array, decode_jpeg, find_shards, iter_shard

    paths = find_shards(pairs, "train")
    ident = json.dumps([[p.name, p.stat().st_size] for p in paths] + [str(data), size, split, CACHE_VERSION])
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"pairs-{size}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return TeacherPairs(
                    z["aged"],
                    z["faces"],
                    z["flow"],
                    z["mask"],
                    z["source"],
                    z["target"],
                    list(z["keys"]),
                    float(z["unit"]),
                )
    rows: dict[str, tuple] = {}
    unit = 0.0
    for path in paths:
        for key, image, labels in iter_shard(path):
            if "flow" not in labels or "mask" not in labels or "source_key" not in labels:
                continue
            assert isinstance(image, np.ndarray)
            unit = float(image.shape[0])
            flow = decode_array(labels["flow"], (-1, 2))
            side = int(round(np.sqrt(len(flow))))
            mask = decode_array(labels["mask"], (side, side))
            rows[str(labels["source_key"])] = (
                key,
                _resize(image, size),
                flow.reshape(side, side, 2),
                cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0),
                float(labels["age"]),
                float(labels["target_age"]),
            )
    faces: dict[str, np.ndarray] = {}
    for key, jpeg, _ in ShardReader(data, split, decode=False):
        if key in rows:
            assert isinstance(jpeg, bytes)
            faces[key] = _resize(decode_jpeg(jpeg), size)
    found = [k for k in rows if k in faces]
    if not found:
        raise DatasetError(f"no teacher pairs in {pairs} have their face in {data} (split {split!r})")
    out = TeacherPairs(
        aged=np.stack([rows[k][1] for k in found]),
        faces=np.stack([faces[k] for k in found]),
        flow=np.stack([rows[k][2] for k in found]).astype(np.float32),
        mask=np.stack([rows[k][3] for k in found]).astype(np.float32),
        source=np.asarray([rows[k][4] for k in found], np.float32),
        target=np.asarray([rows[k][5] for k in found], np.float32),
        keys=[rows[k][0] for k in found],
        flow_unit=unit,
    )
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(
            tmp,
            aged=out.aged,
            faces=out.faces,
            flow=out.flow,
            mask=out.mask,
            source=out.source,
            target=out.target,
            keys=np.asarray(out.keys),
            unit=np.float32(out.flow_unit),
        )
        os.replace(tmp, cache)
    return out
