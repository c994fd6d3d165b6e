from __future__ import annotations

import pytest
import torch

from faceage.errors import DatasetError
from faceage.training.dataset import ShardImageDataset, StepBatchSampler, make_loader

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reads_real_faces_and_mirrors(face_shards):
    ds = ShardImageDataset(face_shards, split="train", mirror=True)
    assert ds.n == 16 and len(ds) == 32 and ds.resolution == 32
    img = ds[3]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    assert torch.equal(ds[16 + 3], img.flip(2))
    assert img.float().std() > 10  # a real photo, not a blank
    stats = ds.stats()
    assert stats["images"] == 16 and sum(stats["age_decades"].values()) == 16
    half = ShardImageDataset(face_shards, resolution=16, mirror=False)
    assert half[0].shape == (3, 16, 16) and len(half) == 16
    with pytest.raises(DatasetError):
        ShardImageDataset(face_shards, resolution=64)
    with pytest.raises(DatasetError, match="no shards"):
        ShardImageDataset(face_shards, split="val")


def test_sampler_order_depends_only_on_seed_and_step():
    a = StepBatchSampler(50, 4, seed=7)
    it = iter(a)
    first = [next(it) for _ in range(30)]  # crosses epoch boundaries (12 steps per epoch)
    resumed = iter(StepBatchSampler(50, 4, seed=7, start_step=17))
    assert [next(resumed) for _ in range(13)] == first[17:]
    assert StepBatchSampler(50, 4, seed=8).batch_at(0) != first[0]
    epoch0 = [i for b in first[:12] for i in b]
    assert len(set(epoch0)) == 48  # no repeats within an epoch


def test_ranks_split_the_global_batch():
    r0 = StepBatchSampler(40, 3, rank=0, world_size=2, seed=1)
    r1 = StepBatchSampler(40, 3, rank=1, world_size=2, seed=1)
    single = StepBatchSampler(40, 6, seed=1)
    for step in (0, 5, 7):
        assert r0.batch_at(step) + r1.batch_at(step) == single.batch_at(step)


def test_loader_with_workers_is_deterministic(face_shards):
    ds = ShardImageDataset(face_shards)
    batches = [b for _, b in zip(range(3), make_loader(ds, 4, 0, 1, seed=0, start_step=0, workers=2, pin_memory=False))]
    again = [b for _, b in zip(range(2), make_loader(ds, 4, 0, 1, seed=0, start_step=1, workers=0, pin_memory=False))]
    assert batches[0].shape == (4, 3, 32, 32)
    assert torch.equal(batches[1], again[0]) and torch.equal(batches[2], again[1])
