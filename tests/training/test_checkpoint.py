from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from faceage.training.checkpoint_format import (
    CheckpointError,
    capture_rng_state,
    checkpoint_files,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.Linear(300, 8))
    opt = torch.optim.Adam(model.parameters(), betas=(0.0, 0.99))
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "opt": opt.state_dict(),  # int keys, tuples, 0-d tensors
        "bf16": torch.randn(5, 7).to(torch.bfloat16),
        "progress": {"step": 12, "nimg": 48, "p": 0.125, "none": None, "flag": True},
        "rng": [capture_rng_state()],
    }


def _assert_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_round_trip_split_into_small_parts(tmp_path):
    state = _state()
    limit = 40 * 1024  # forces several parts and chunks the 300x64 float matrix (75 KiB)
    index = save_checkpoint(tmp_path, 12, state, max_part_bytes=limit)
    files = checkpoint_files(index)
    parts = files[1:]
    assert len(parts) >= 3
    assert all(p.stat().st_size <= limit for p in parts)
    meta = json.loads(index.read_text())
    assert meta["step"] == 12 and meta["chunked"]
    assert all(len(e["sha256"]) == 64 for e in meta["parts"])
    _assert_equal(state, load_checkpoint(index))
    # The optimizer state loads back into a fresh optimizer.
    model = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.Linear(300, 8))
    opt = torch.optim.Adam(model.parameters())
    opt.load_state_dict(load_checkpoint(tmp_path)["opt"])
    assert opt.param_groups[0]["betas"] == (0.0, 0.99)


def test_default_parts_are_at_most_16_mib(tmp_path):
    big = {"w": torch.zeros(3 * 2**20 + 5), "v": torch.zeros(2**20)}  # 16 MiB + 4 MiB of float32
    index = save_checkpoint(tmp_path, 1, big)
    assert all(p.stat().st_size <= 16 * 2**20 for p in checkpoint_files(index)[1:])
    _assert_equal(big, load_checkpoint(index))


def test_corrupt_or_missing_part_is_detected_and_skipped(tmp_path):
    state = {"x": torch.arange(10.0)}
    first = save_checkpoint(tmp_path, 1, state, keep=None)
    second = save_checkpoint(tmp_path, 2, {"x": torch.arange(10.0) + 1}, keep=None)
    part = checkpoint_files(second)[1]
    data = bytearray(part.read_bytes())
    data[-1] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(second)
    with pytest.warns(UserWarning, match="skipping"):
        assert latest_checkpoint(tmp_path) == first
    part.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(second)


def test_keep_prunes_old_checkpoints(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"x": torch.zeros(3)}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000002.json", "ckpt-000000003.json"]
    assert len(list(tmp_path.glob("ckpt-000000001*"))) == 0
    assert not list(tmp_path.glob(".*tmp"))


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint(tmp_path, 0, {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(load_checkpoint(tmp_path)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_rejects_non_checkpoint(tmp_path):
    (tmp_path / "ckpt-000000001.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a faceage training checkpoint"):
        load_checkpoint(tmp_path / "ckpt-000000001.json")
