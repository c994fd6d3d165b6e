"""Shared test fixtures: real photos, from scikit-image and from ../shared/datasets beside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The quick loop, `make test-fast` (pytest -m "not slow"), leaves out the tests that train networks,
# export graphs, drive whole commands or the web server, or load the dlib and ONNX evaluators: in
# `make test`'s --durations they take about 90 % of the suite's time. A new slow test carries
# @pytest.mark.slow where it stands; these files, and these single tests, are slow as a whole.
SLOW_FILES = {
    "data/test_pairs.py",
    "data/test_prepare.py",
    "eval/test_aging_bench.py",
    "eval/test_fid.py",
    "eval/test_identity.py",
    "export/test_onnx_export.py",
    "methods/test_age_command.py",
    "methods/test_batch_limits.py",
    "methods/test_engine.py",
    "methods/test_every_method.py",
    "methods/test_shipped_ipcgan.py",
    "models/test_official_stylegan2.py",
    "serve/test_serve_app.py",
    "training/test_refiner_training.py",
    "training/test_student_training.py",
    "serve/test_serve_browser.py",
    "test_cli.py",
    "training/test_age_training.py",
    "training/test_commands.py",
    "training/test_distributed.py",
    "training/test_gan.py",
    "training/test_ipcgan_training.py",
}
SLOW_TESTS = {
    "data/test_datasets.py::test_full_label_lists_scan_without_decoding",
    "data/test_split.py::test_real_split_is_stratified_with_2000_test_faces",
    "faces/test_imageio.py::test_large_camera_photo_loads",
    "models/test_ipcgan_networks.py::test_alexnet_conv5_separates_people_more_than_small_changes",
    "models/test_model_layers.py::test_compiles_without_graph_breaks",
    "training/test_dataset.py::test_loader_with_workers_is_deterministic",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        path = item.path.resolve().relative_to(tests).as_posix()
        if path in SLOW_FILES or f"{path}::{item.name.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


# faces per split of the session-wide tiny prepared folder (fixture tiny_data)
TINY_SPLITS = {"train": 40, "val": 12, "test": 12}
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The research datasets folder that CI places beside the checkout."""
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"expected the shared datasets beside the checkout at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A public-domain 512x512 RGB portrait (Eileen Collins) shipped with scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, shared_datasets) -> Path:
    """A prepared folder (shards + manifest, the ``faceage data prepare`` format) of 64 real faces.

    UTKFace crops (not our alignment; enough for mechanics) with ages spread over 1..100, written
    at 96 px so the loader's resize to 64 px is exercised.
    """
    from faceage.data.datasets import ETHNICITIES
    from faceage.data.shards import FORMAT, MANIFEST, ShardWriter

    images = shared_datasets / "utkface" / "images"
    files = sorted(p for p in images.iterdir() if p.name.count("_") >= 3)
    by_age: dict[int, list[Path]] = {}
    for p in files:
        age = int(p.name.split("_")[0])
        by_age.setdefault(age, []).append(p)
    wanted = sum(TINY_SPLITS.values())
    ages = np.linspace(1, 100, wanted).round().astype(int)
    chosen = []
    for a in ages:
        near = min(by_age, key=lambda k: (abs(k - a), k))
        chosen.append(by_age[near][len(chosen) % len(by_age[near])])
    folder = tmp_path_factory.mktemp("faces")
    splits = [s for s, n in TINY_SPLITS.items() for _ in range(n)]
    rng = np.random.default_rng(0)
    rng.shuffle(splits)  # every split spans all ages
    with ShardWriter(folder) as writer:
        for i, (path, split) in enumerate(zip(chosen, splits)):
            age, gender, race = (int(v) for v in path.name.split("_")[:3])
            rgb = np.asarray(Image.open(path).convert("RGB").resize((96, 96), Image.BILINEAR))
            labels = {
                "age": age,
                "gender": gender,
                "ethnicity": ETHNICITIES[race],
                "source": "utkface",
                "file": path.name,
            }
            writer.write_image(f"utk_{i:03d}", split, rgb, labels)
    shards = [s.to_dict() for s in writer.shards]
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "shards": shards}))
    return folder


@pytest.fixture(scope="session")
def tiny_splits() -> dict[str, int]:
    """How many faces each split of ``tiny_data`` holds."""
    return dict(TINY_SPLITS)


@pytest.fixture(scope="session")
def tiny_faces256(tmp_path_factory, shared_datasets) -> Path:
    """A prepared folder of 48 real UTKFace faces aligned at 256 px by the real face pipeline, with
    their 478 landmarks, ages spread over 1..90 and both genders (the ``data prepare`` format)."""
    from faceage.data.datasets import ETHNICITIES
    from faceage.data.shards import FORMAT, MANIFEST, ShardWriter, encode_landmarks
    from faceage.faces.pipeline import FacePipeline
    from faceage.imageio import load_image

    images = shared_datasets / "utkface" / "images"
    files = sorted(p for p in images.iterdir() if p.name.count("_") >= 3)
    by_key: dict[tuple[int, int], list[Path]] = {}
    for p in files:
        age, gender = (int(v) for v in p.name.split("_")[:2])
        by_key.setdefault((age, gender), []).append(p)
    pipeline = FacePipeline(size=256)
    folder = tmp_path_factory.mktemp("faces256")
    splits = ["train"] * 4 + ["val"]
    with ShardWriter(folder) as writer:
        n = 0
        for i, age in enumerate(np.linspace(1, 90, 30).round().astype(int)):
            for gender in (0, 1):
                near = min((k for k in by_key if k[1] == gender), key=lambda k: (abs(k[0] - age), k))
                path = by_key[near][i % len(by_key[near])]
                try:
                    face = pipeline.align_one(load_image(path))
                except Exception:  # noqa: BLE001 - a crop the detector misses is simply not used
                    continue
                if face.landmarks is None:
                    continue
                a, g, race = (int(v) for v in path.name.split("_")[:3])
                labels = {
                    "age": a,
                    "gender": g,
                    "ethnicity": ETHNICITIES[race],
                    "source": "utkface",
                    "file": path.name,
                    "landmarks": encode_landmarks(face.landmarks),
                }
                writer.write_image(f"utk_{n:03d}", splits[n % len(splits)], face.image, labels)
                n += 1
    shards = [s.to_dict() for s in writer.shards]
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "size": 256, "shards": shards}))
    return folder


@pytest.fixture(scope="session")
def tiny_prototypes(tiny_faces256, tmp_path_factory):
    """Prototypes built by the real builder from ``tiny_faces256`` (bins without faces borrowed)."""
    from faceage.training.prototype_builder import BuildOptions, build

    return build(
        tiny_faces256, tmp_path_factory.mktemp("protorun"), BuildOptions(min_cell=1000, pca=16), progress=False
    )


@pytest.fixture(scope="session")
def tiny_pairs(tiny_faces256, tiny_prototypes, tmp_path_factory) -> Path:
    """Teacher pairs (``faceage data pairs``) of 8 ``tiny_faces256`` faces, made in this process by
    the prototype method on the tiny prototypes (loop off: seconds, not minutes)."""
    from faceage.data.pairs_commands import make_pairs

    root = tmp_path_factory.mktemp("pairs")
    weights = tiny_prototypes.save(root / "prototypes.safetensors")
    folder = root / "pairs"
    make_pairs(
        tiny_faces256,
        folder,
        8,
        workers=1,
        options={"loop": False},
        weights=weights,
        echo=lambda _: None,
    )
    return folder
