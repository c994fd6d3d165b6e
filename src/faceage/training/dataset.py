"""Random-access face dataset over ``faceage-shards-v1`` tar shards, and a resumable batch order.

The shards (written by :mod:`faceage.data.shards`) hold ``KEY.jpg`` + ``KEY.json`` pairs. On
construction each shard of the chosen split is indexed once (tar headers + the small label
JSONs), recording where each JPEG's bytes start; ``__getitem__`` then seeks, reads and decodes
one face. DataLoader workers each open their own file handles, so JPEG decoding runs in parallel.

Batch order is a pure function of (seed, step, rank, world size): :class:`StepBatchSampler`
derives epoch ``e`` and the position inside it from the step, shuffles with ``seed + e``, and
gives each rank its slice of the global batch. Resuming at step ``s`` therefore continues the
exact sequence of images without saving any loader state, and no randomness runs inside the
workers (mirroring is decided by the sampler: indices ``>= n`` are the mirrored copies).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from faceage.data.shards import find_shards, index_shard
from faceage.errors import DatasetError


class ShardImageDataset(Dataset):
    """Aligned faces from tar shards as (3, R, R) uint8 tensors; index ``i >= n`` is face ``i - n`` mirrored.

    Args:
        folder: prepared data folder (``manifest.json`` + ``faces-{split}-NNNN.tar``).
        split: which split to read (``train``, ``val``, ``test``); None = all shards.
        resolution: output size; faces stored larger are box-filtered down (integer factors),
            never up. None = the stored size (all faces must share it).
        mirror: expose horizontally mirrored copies as a second half of the index space.
    """

    def __init__(
        self, folder: str | Path, split: str | None = "train", resolution: int | None = None, mirror: bool = True
    ):
        self.folder = Path(folder)
        self.split = split
        self.paths = find_shards(self.folder, split)
        shard_ids, offsets, sizes, labels = [], [], [], []
        for i, path in enumerate(self.paths):
            entries, labs = index_shard(path)
            shard_ids += [i] * len(entries)
            offsets += [e[0] for e in entries]
            sizes += [e[1] for e in entries]
            labels += labs
        if not offsets:
            raise DatasetError(f"no images in the shards of {self.folder} (split {split!r})")
        self._shard = np.asarray(shard_ids, np.int32)
        self._offset = np.asarray(offsets, np.int64)
        self._size = np.asarray(sizes, np.int64)
        self._ages = np.asarray([float(lab.get("age", np.nan)) for lab in labels], np.float64)
        self.n = len(offsets)
        self.mirror = mirror
        self._files: dict[int, BinaryIO] = {}
        self._pid = -1
        stored = self._decode(0, resize=False).shape[0]
        self.stored_resolution = stored
        self.resolution = stored if resolution is None else int(resolution)
        if self.resolution > stored or stored % self.resolution:
            raise DatasetError(f"cannot make {self.resolution} px faces from {stored} px shards in {self.folder}")

    def __len__(self) -> int:
        return self.n * (2 if self.mirror else 1)

    def _read(self, j: int) -> bytes:
        if self._pid != os.getpid():  # fresh handles in each DataLoader worker
            self._files, self._pid = {}, os.getpid()
        s = int(self._shard[j])
        f = self._files.get(s)
        if f is None:
            f = self._files[s] = open(self.paths[s], "rb")  # noqa: SIM115 - kept open for reuse
        f.seek(int(self._offset[j]))
        return f.read(int(self._size[j]))

    def _decode(self, j: int, resize: bool = True) -> np.ndarray:
        where = self.paths[int(self._shard[j])]
        try:
            with Image.open(io.BytesIO(self._read(j))) as opened:
                im = opened.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot decode face {j} in {where}: {exc}") from exc
        if resize:
            if im.width != self.stored_resolution or im.height != im.width:
                raise DatasetError(f"face {j} in {where} is {im.width}x{im.height}, expected {self.stored_resolution}")
            if im.width != self.resolution:
                im = im.reduce(im.width // self.resolution)  # box filter
        return np.array(im)  # writable copy (torch warns on read-only arrays)

    def __getitem__(self, i: int) -> torch.Tensor:
        j = i % self.n
        img = self._decode(j)
        if img.shape[0] != self.resolution or img.shape[1] != self.resolution:
            raise DatasetError(f"face {j} has size {img.shape[:2]}, expected {self.resolution}")
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        if i >= self.n:
            t = t.flip(2)
        return t.contiguous()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, -1  # file handles do not travel to workers
        return state

    def stats(self) -> dict:
        """What the model was trained on: counts, shard identities, age histogram by decade."""
        ages = self._ages[np.isfinite(self._ages)]
        decades = Counter(int(a // 10) * 10 for a in ages)
        h = hashlib.sha256()
        for p in self.paths:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}".encode())
        return {
            "folder": str(self.folder),
            "split": self.split,
            "images": self.n,
            "mirror": self.mirror,
            "resolution": self.resolution,
            "shards": [p.name for p in self.paths],
            "identity": h.hexdigest()[:16],
            "age_decades": {str(k): v for k, v in sorted(decades.items())},
            "age_mean": float(ages.mean()) if ages.size else None,
        }

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


class StepBatchSampler(Sampler[list[int]]):
    """Endless batches whose content depends only on (seed, step, rank, world size).

    Epoch ``e`` is a permutation of all ``dataset_len`` indices drawn with seed ``seed + e``;
    it is cut into global batches of ``batch_per_rank * world_size`` (the remainder is dropped),
    and rank ``r`` takes the ``r``-th slice of each. ``start_step`` skips the steps already done.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_per_rank: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
    ):
        if batch_per_rank < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler setup: batch {batch_per_rank}, rank {rank}, world {world_size}")
        self.global_batch = batch_per_rank * world_size
        if dataset_len < self.global_batch:
            raise DatasetError(f"{dataset_len} images are fewer than one global batch of {self.global_batch}")
        self.n = dataset_len
        self.batch = batch_per_rank
        self.rank, self.world_size = rank, world_size
        self.seed, self.start_step = seed, start_step
        self.steps_per_epoch = dataset_len // self.global_batch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch_at(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        start = k * self.global_batch + self.rank * self.batch
        return self._perm[start : start + self.batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is PIL's work; keep workers off the trainer's cores


def make_loader(
    dataset: ShardImageDataset,
    batch_per_rank: int,
    rank: int,
    world_size: int,
    seed: int,
    start_step: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader:
    """Endless DataLoader of uint8 (B, 3, R, R) batches starting at ``start_step``."""
    sampler = StepBatchSampler(len(dataset), batch_per_rank, rank, world_size, seed, start_step)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _worker_init}
    # A private generator: DataLoader draws a base seed when iterated, which would otherwise come
    # from (and shift) the global RNG that training restores on resume.
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def to_float_images(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [-1, 1] on ``device`` (the copy travels as uint8)."""
    x = batch.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def real_batches(
    dataset: ShardImageDataset, n: int, batch: int, seed: int = 123, workers: int = 0
) -> Iterator[torch.Tensor]:
    """The first ``n`` unmirrored faces of a seeded permutation, as uint8 batches (for FD statistics)."""
    n = min(n, dataset.n)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(dataset.n, generator=g)[:n].tolist()
    chunks = [order[i : i + batch] for i in range(0, n, batch)]
    loader = DataLoader(
        dataset, batch_sampler=chunks, num_workers=workers, generator=torch.Generator().manual_seed(seed)
    )
    yield from loader
