"""Fixtures for the aging engine and `faceage age`: a tiny, randomly initialised IPCGAN generator
(a real network, seeded) on real photos, with the real detector, estimator and verifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceage.age_groups import get_grouping
from faceage.assets import EXAMPLE_PHOTO
from faceage.imageio import load_image
from faceage.methods.ipcgan import IPCGANMethod
from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator

TINY = IPCGANConfig(g_channels=4, g_blocks=1, residual=False)


def tiny_generator(seed: int = 0) -> IPCGANGenerator:
    """A random generator whose output visibly depends on the target group.

    At default initialisation the tiny network outputs nearly flat grey whatever the condition, so
    the change pasted (edited - reconstructed) would be under one grey level. Larger weights on the
    condition planes and on the RGB head make groups differ by several levels, enough to check that
    the face region changes and everything else does not.
    """
    torch.manual_seed(seed)
    generator = IPCGANGenerator(TINY)
    with torch.no_grad():
        first = generator.encoder[0][0].weight
        first[:, 3:] = torch.randn_like(first[:, 3:])
        generator.to_rgb.weight.mul_(30.0)
    return generator.eval()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The CPU is shared with other jobs: one intra-op thread beats two fighting for it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_method() -> IPCGANMethod:
    return IPCGANMethod(tiny_generator(), get_grouping("lifespan"), info={"weights": "tiny-random"})


@pytest.fixture(scope="session")
def ager(tiny_method):
    from faceage.methods.engine import Ager

    return Ager(tiny_method)


@pytest.fixture(scope="session")
def quick_ager(ager):
    """The same method and models without the reached-age/identity measures."""
    from faceage.methods.engine import Ager

    return Ager(ager.method, pipeline=ager.pipeline, estimator=ager.estimator, evaluate=False)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """The tiny generator saved as a weights file (+ its JSON), as `faceage train ipcgan` ships them."""
    from faceage.models.io import save_flat

    return save_flat(tiny_generator(), tmp_path_factory.mktemp("weights") / "g.safetensors", {"grouping": "lifespan"})


@pytest.fixture(scope="session")
def example_rgb() -> np.ndarray:
    return load_image(EXAMPLE_PHOTO)


@pytest.fixture(scope="session")
def utk_path(shared_datasets) -> Path:
    """The first UTKFace photo (by name) labelled 30 years: a tight 200x200 real face crop."""
    folder = shared_datasets / "utkface" / "images"
    return folder / sorted(p.name for p in folder.glob("30_*"))[0]


@pytest.fixture(scope="session")
def photos(example_rgb, utk_path, astronaut) -> dict[str, np.ndarray]:
    return {"example": example_rgb, "utkface": load_image(utk_path), "astronaut": astronaut}


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch) -> Path:
    """A stand-in for faceage/weights holding every shipped file except the aging methods' (linked),
    whether or not those are installed in the checkout."""
    import json

    import faceage.assets
    from faceage.methods.registry import METHODS

    real = faceage.assets.WEIGHTS_DIR
    aging = {name for spec in METHODS.values() for name in spec.shipped}
    aging |= {str(Path(name).with_suffix(".json")) for name in aging}
    folder = tmp_path / "shipped"
    folder.mkdir()
    for path in real.iterdir():
        if path.name not in aging and path.name != "manifest.json":
            (folder / path.name).symlink_to(path)
    manifest = {k: v for k, v in faceage.assets.read_manifest().items() if k not in aging}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(faceage.assets, "WEIGHTS_DIR", folder)
    return folder


@pytest.fixture
def installed(shipped_dir, tiny_weights) -> Path:
    """The tiny generator installed as the shipped IPCGAN weights, with its manifest entry."""
    import json
    import shutil

    from faceage.checksum import sha256_file
    from faceage.methods.ipcgan import SHIPPED_NAME

    target = shipped_dir / SHIPPED_NAME
    shutil.copy(tiny_weights, target)
    shutil.copy(tiny_weights.with_suffix(".json"), target.with_suffix(".json"))
    manifest = json.loads((shipped_dir / "manifest.json").read_text())
    manifest[SHIPPED_NAME] = {"sha256": sha256_file(target)}
    (shipped_dir / "manifest.json").write_text(json.dumps(manifest))
    return target
