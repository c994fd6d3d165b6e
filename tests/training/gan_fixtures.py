"""Helpers for the GAN trainer tests: a tiny shard folder of real faces and a tiny GAN config.

(A module of its own rather than conftest.py, so spawned DDP workers can import it by name.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.data.shards import FORMAT, MANIFEST, ShardWriter, write_json_atomic

UTK = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "utkface" / "images"


def make_shards(folder: Path, n: int = 16, size: int = 32, max_bytes: int = 48 * 2**20, split: str = "train") -> Path:
    """``n`` real UTKFace faces (already aligned crops), resized to ``size``, in faceage shards."""
    if not UTK.is_dir():
        pytest.fail(f"expected UTKFace images at {UTK}")
    files = sorted(UTK.glob("*.jpg"))[::997][:n]
    assert len(files) == n, f"need {n} UTKFace images, found {len(files)}"
    with ShardWriter(folder, max_bytes=max_bytes) as writer:
        for i, f in enumerate(files):
            with Image.open(f) as im:
                rgb = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BOX))
            age = int(f.name.split("_")[0])
            writer.write_image(f"face{i:04d}", split, rgb, {"age": age, "file": f.name})
    write_json_atomic(
        folder / MANIFEST, {"format": FORMAT, "size": size, "shards": [s.to_dict() for s in writer.shards]}
    )
    return folder


def tiny_config(**overrides):
    """Resolution 32, 32 channels, batch 4, small mapping: a GAN that steps in ~0.1 s on one core."""
    from faceage.training.augment import AugmentConfig
    from faceage.training.gan import GANConfig

    base = dict(
        resolution=32,
        channel_max=32,
        channel_base=512,
        z_dim=32,
        w_dim=32,
        mapping_layers=2,
        sub_resolutions=(8, 16, 32),
        batch=4,
        amp="off",
        channels_last=False,
        mbstd_group=2,
        augment=AugmentConfig(p_init=0.3),
    )
    base.update(overrides)
    return GANConfig(**base)
