"""Shards: size limit, atomic writes, determinism, round trip of faces and labels, the reader."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.data.shards import (
    FORMAT,
    ShardReader,
    ShardWriter,
    encode_jpeg,
    iter_shard,
    read_index,
    write_json_atomic,
)
from faceage.errors import DatasetError


def _noise(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def face(shared_datasets: Path) -> np.ndarray:
    with Image.open(shared_datasets / "aaf" / "images" / "06000A46.jpg") as im:
        return np.asarray(im.convert("RGB").resize((128, 128)))


def _labels(i: int) -> dict:
    return {"age": 20 + i, "gender": i % 2, "ethnicity": "asian", "source": "aaf", "file": f"{i:05d}A20.jpg"}


def test_shards_never_exceed_max_bytes(tmp_path: Path) -> None:
    max_bytes = 100_000  # noise JPEGs are ~10-13 kB: several shards
    with ShardWriter(tmp_path, max_bytes=max_bytes) as writer:
        for i in range(40):
            writer.write_image(f"k{i:03d}", "train" if i % 4 else "test", _noise(i), _labels(i))
    shards = writer.shards
    assert len([s for s in shards if s.split == "train"]) >= 3
    for s in shards:
        path = tmp_path / s.name
        assert path.stat().st_size == s.bytes <= max_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.name for s in shards)  # no .tmp left
    assert sum(s.count for s in shards) == 40
    assert {s.name for s in shards} >= {"faces-train-0000.tar", "faces-train-0001.tar", "faces-test-0000.tar"}


def test_round_trip_images_and_labels(tmp_path: Path, face: np.ndarray) -> None:
    images = {f"aaf-{i:05d}A20": np.roll(face, 7 * i, axis=1) for i in range(5)}
    with ShardWriter(tmp_path) as writer:
        for i, (key, rgb) in enumerate(images.items()):
            writer.write_image(key, "val", rgb, _labels(i))
    (shard,) = writer.shards
    samples = list(iter_shard(tmp_path / shard.name))
    assert [k for k, _, _ in samples] == list(images)
    for i, (key, rgb, labels) in enumerate(samples):
        assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
        assert np.abs(rgb.astype(int) - images[key]).mean() < 2.0  # JPEG q95 4:4:4
        assert labels == {**_labels(i), "key": key, "split": "val"}
    raw = next(iter_shard(tmp_path / shard.name, decode=False))[1]
    assert raw[:2] == b"\xff\xd8"
    with tarfile.open(tmp_path / shard.name) as tar:  # plain tar, KEY.jpg then KEY.json
        assert tar.getnames()[:2] == ["aaf-00000A20.jpg", "aaf-00000A20.json"]


def test_same_input_gives_identical_shards(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        with ShardWriter(tmp_path / run, max_bytes=60_000) as writer:
            for i in range(8):
                writer.write_image(f"k{i}", "train", _noise(i), _labels(i))
        digests.append([(s.name, s.sha256) for s in writer.shards])
    assert digests[0] == digests[1]


def test_abort_keeps_finished_shards_only(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, max_bytes=60_000) as writer:
            for i in range(8):
                writer.write_image(f"k{i}", "train", _noise(i), _labels(i))
            raise RuntimeError("interrupted")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(n.endswith(".tar") for n in names)
    assert names == [s.name for s in writer.shards]
    for name in names:
        list(iter_shard(tmp_path / name))  # complete and readable


def test_bad_samples_are_refused(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, max_bytes=50_000)
    with pytest.raises(ValueError, match="does not fit"):
        writer.write_image("big", "train", _noise(0, size=200), {})
    with pytest.raises(ValueError, match="key"):
        writer.write("a.b", "train", b"x", {})
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((8, 8), np.uint8))
    writer.abort()


def test_reader_uses_the_manifest_and_verifies(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_bytes=60_000) as writer:
        for i in range(10):
            writer.write_image(f"k{i}", "train" if i < 7 else "test", _noise(i), _labels(i))
    with pytest.raises(DatasetError, match="no manifest.json"):
        read_index(tmp_path)
    write_json_atomic(tmp_path / "manifest.json", {"format": FORMAT, "shards": [s.to_dict() for s in writer.shards]})
    assert [s.name for s in read_index(tmp_path, "test")] == ["faces-test-0000.tar"]
    reader = ShardReader(tmp_path, split="train", verify=True)
    assert len(reader) == 7 and [k for k, _, _ in reader] == [f"k{i}" for i in range(7)]
    victim = tmp_path / reader.shards[0].name
    victim.write_bytes(victim.read_bytes()[:-20000] + bytes(20000))
    with pytest.raises(DatasetError, match="does not match"):
        list(ShardReader(tmp_path, split="train", verify=True))


def test_reading_needs_only_stdlib_pillow_numpy(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        writer.write_image("k0", "train", _noise(0), _labels(0))
    code = (
        "import sys\n"
        "for m in ('torch', 'cv2', 'ai_edge_litert', 'onnxruntime', 'click', 'tqdm'): sys.modules[m] = None\n"
        "from faceage.data.shards import iter_shard\n"
        f"(key, rgb, labels), = iter_shard({str(tmp_path / 'faces-train-0000.tar')!r})\n"
        "assert key == 'k0' and rgb.shape == (64, 64, 3) and labels['age'] == 20\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
