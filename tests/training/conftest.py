"""Fixtures for the trainer tests (helpers live in gan_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gan_fixtures import PER_SPLIT, make_shards
from PIL import Image

from faceage.data.shards import FORMAT, MANIFEST, ShardWriter



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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, shared_datasets) -> Path:
    """A prepared folder (shards + manifest, the ``faceage data prepare`` format) of 64 real faces.

    UTKFace crops (not our alignment; enough for mechanics) with ages spread over 1..100, written
    at 96 px so the loader's resize to 64 px is exercised.
    """
    images = shared_datasets / "utkface" / "images"
    files = sorted(p for p in images.iterdir() if p.name.count("_") >= 3)
    by_age: dict[int, list[Path]] = {}
    for p in files:
        age = int(p.name.split("_")[0])
        by_age.setdefault(age, []).append(p)
    wanted = sum(PER_SPLIT.values())
    ages = np.linspace(1, 100, wanted).round().astype(int)
    chosen = []
    for a in ages:
        near = min(by_age, key=lambda k: (abs(k - a), k))
        chosen.append(by_age[near][len(chosen) % len(by_age[near])])
    folder = tmp_path_factory.mktemp("faces")
    splits = [s for s, n in PER_SPLIT.items() for _ in range(n)]
    rng = np.random.default_rng(0)
    rng.shuffle(splits)  # every split spans all ages
    with ShardWriter(folder) as writer:
        for i, (path, split) in enumerate(zip(chosen, splits)):
            age, gender, race = (int(v) for v in path.name.split("_")[:3])
            rgb = np.asarray(Image.open(path).convert("RGB").resize((96, 96), Image.BILINEAR))
            labels = {"age": age, "gender": gender, "ethnicity": race, "source": "utkface", "file": path.name}
            writer.write_image(f"utk_{i:03d}", split, rgb, labels)
    shards = [s.to_dict() for s in writer.shards]
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "shards": shards}))
    return folder
