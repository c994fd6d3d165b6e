"""Model files are found without downloads, and shipped weights match their manifest."""

from __future__ import annotations

import shutil

import pytest

from faceage import assets
from faceage.errors import ModelFileError


@pytest.mark.parametrize(
    "name",
    ["yunet", "face_landmarker", "age_onnx", "dlib_5pt", "dlib_resnet", "sface", "selfie_segmentation", "mobilenet_v2"],
)
def test_every_model_file_is_installed(name):
    path = assets.model_path(name)
    assert path.is_file() and path.stat().st_size > 10_000


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelFileError, match="known models: .*yunet"):
        assets.model_path("yolo")


def test_every_shipped_file_matches_its_manifest():
    manifest = assets.read_manifest()
    assert manifest, "manifest lists no weights"
    for name in manifest:
        assert assets.verify_shipped(name).is_file()
    shipped = {
        p.name for p in assets.WEIGHTS_DIR.iterdir() if p.name != "manifest.json" and not p.name.startswith((".", "_"))
    }
    assert shipped <= set(manifest), f"weights without a manifest entry: {shipped - set(manifest)}"


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    fake = tmp_path / "weights"
    shutil.copytree(assets.WEIGHTS_DIR, fake)
    (fake / "selfie_segmentation.tflite").write_bytes(b"not a model")
    monkeypatch.setattr(assets, "WEIGHTS_DIR", fake)
    with pytest.raises(ModelFileError, match="corrupt"):
        assets.verify_shipped("selfie_segmentation.tflite")
