"""Method ``student`` with a tiny student: the Edit the engine pastes, sub-network choice, budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceage.methods.student import StudentMethod
from faceage.models.io import save_flat
from faceage.models.student import Student, StudentConfig

TINY = StudentConfig(input_size=32, widths=(4, 8, 8), blocks=1, resolutions=(64, 128, 256), flow_size=32)


@pytest.fixture(scope="module")
def net() -> Student:
    torch.manual_seed(0)
    net = Student(TINY)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in [*net.heads.values(), net.flow_head]:
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
    return net


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)


def test_edit_gives_flow_and_the_warped_input(net, faces):
    edit = StudentMethod(net).edit(faces, np.array([20.0, 50.0]), 70.0)
    assert edit.edited.shape == faces.shape and edit.reconstructed.shape == faces.shape
    assert edit.flow.shape == (2, 256, 256, 2) and np.isfinite(edit.flow).all()
    assert np.abs(edit.flow).max() <= TINY.max_flow + 1e-3  # 256 px face: the flow's own unit
    assert not np.array_equal(edit.edited, edit.reconstructed)
    again = StudentMethod(net).edit(faces, np.array([20.0, 50.0]), 70.0)
    assert np.array_equal(again.edited, edit.edited)  # deterministic


def test_smaller_subnetworks_and_gray_faces(net, faces):
    small = StudentMethod(net, resolution=64, ratio=0.25)
    assert small.describe()["resolution"] == 64
    gray = np.repeat(faces[..., :1], 3, axis=3)
    out = small.edit(gray, np.array([20.0, 50.0]), 10.0).edited.astype(int)
    assert (out.max(axis=3) - out.min(axis=3)).max() <= 1
    with pytest.raises(ValueError, match="no sub-network"):
        StudentMethod(net, resolution=96)
    with pytest.raises(ValueError, match="faces must be"):
        small.edit(faces[:, :128], np.array([20.0, 50.0]), 10.0)


def test_budget_picks_a_measured_subnetwork(net, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    roomy = StudentMethod(net, budget_ms=10_000)
    assert (roomy.resolution, roomy.ratio) == TINY.full and roomy.describe()["budget_met"]
    tight = StudentMethod(net, budget_ms=1e-6)  # nothing fits: the cheapest, said so
    assert (tight.resolution, tight.ratio) == (64, 0.25) and tight.describe()["budget_met"] is False
    assert (tmp_path / "faceage" / "latency.json").is_file()
    with pytest.raises(ValueError, match="not both"):
        StudentMethod(net, budget_ms=5, resolution=64)


def test_the_engine_pastes_it(net, tmp_path):
    from skimage import data

    from faceage.methods.engine import Ager

    path = save_flat(net, tmp_path / "student.safetensors")
    ager = Ager(StudentMethod.from_weights(path), evaluate=False)
    photo = np.ascontiguousarray(data.astronaut())
    result = ager.age(photo, 70.0)
    assert result.image.shape == photo.shape and len(result.faces) == 1
    assert np.abs(result.image.astype(int) - photo).mean() > 0.1  # the face changed, in place


def test_registry_and_cli_take_the_budget(net, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image
    from skimage import data

    from faceage.cli import cli
    from faceage.errors import FaceageError
    from faceage.methods.registry import load_method

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = save_flat(net, tmp_path / "student.safetensors")
    sub = load_method("student", weights=path, resolution="64", ratio="0.5")
    assert (sub.resolution, sub.ratio) == (64, 0.5)
    assert (load_method("student", weights=path).resolution, 1.0) == TINY.full  # 0 / absent: the full network
    with pytest.raises(FaceageError, match="not both"):
        load_method("student", weights=path, budget_ms="5", resolution="64")
    with pytest.raises(FaceageError, match="no option 'width'"):
        load_method("student", weights=path, width="0.5")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut())).save(photo)
    args = ["age", str(photo), "--to", "70", "--method", "student", "--weights", str(path), "--no-eval"]
    result = CliRunner().invoke(cli, [*args, "--budget-ms", "1e-6", "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "faceage" / "latency.json").is_file()  # the budget timed the sub-networks
    refused = CliRunner().invoke(cli, ["age", str(photo), "--to", "70", "--budget-ms", "10", "--no-eval"])
    assert isinstance(refused.exception, FaceageError) and "budget_ms" in str(refused.exception)  # prototype: none
