"""Fixtures for the trainer tests (helpers live in gan_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gan_fixtures import make_shards


@pytest.fixture(scope="session")
def face_shards(tmp_path_factory) -> Path:
    """16 real UTKFace faces at 32 px in one faceage shard (with manifest)."""
    return make_shards(tmp_path_factory.mktemp("faces32"))


@pytest.fixture
def one_thread():
    """The CPU is shared: one intra-op thread is faster than two fighting for it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
