"""Student trainer on real teacher pairs (tiny): sandwich steps, exact resume, export, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceage.models.io import load_flat, read_flat_config
from faceage.models.student import Student, StudentConfig
from faceage.training.checkpoint_format import load_checkpoint
from faceage.training.run import TrainingError
from faceage.training.student_commands import student_command
from faceage.training.student_trainer import (
    WEIGHTS_NAME,
    StudentTrainOptions,
    chroma_error,
    sample_submodel,
    train_student,
)

TINY = dict(
    batch=4,
    input_size=32,
    widths=(4, 8, 8),
    blocks=1,
    resolutions=(16, 32, 64),
    flow_size=16,
    identity_size=64,
    log_every=1,
    checkpoint_every=2,
    eval_every=3,
    threads=1,
)


def _opts(pairs, data, out, **kw) -> StudentTrainOptions:
    return StudentTrainOptions(pairs=str(pairs), data=str(data), out=str(out), **{**TINY, "steps": 4, **kw})


def _tiny_config() -> StudentConfig:
    return _opts(".", ".", ".").model_config()


def test_chroma_error_sees_smooth_colour_shifts_not_luma():
    torch.manual_seed(0)
    faces = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    brighter = faces + 0.1  # luma only: the same shift on R, G and B
    greener = faces + torch.tensor([-0.05, 0.05, -0.05]).view(1, 3, 1, 1)
    assert float(chroma_error(faces, faces, 8)) == 0.0
    assert float(chroma_error(brighter, faces, 8)) < 1e-6
    assert float(chroma_error(greener, faces, 8)) > 0.02
    speckle = faces + 0.05 * torch.randn(2, 1, 32, 32) * torch.tensor([-1.0, 1.0, -1.0]).view(1, 3, 1, 1)
    assert float(chroma_error(speckle, faces, 8)) < float(chroma_error(speckle, faces, 1)) / 3  # cells average it out


def test_submodel_draw_never_picks_the_full_network_and_is_seeded():
    cfg = StudentConfig()
    draws = [sample_submodel(cfg, 0, k) for k in range(200)]
    assert cfg.full not in draws and len(set(draws)) == len(cfg.sub_models()) - 1
    assert draws == [sample_submodel(cfg, 0, k) for k in range(200)]


def test_train_logs_every_submodel_and_exports(tiny_pairs, tiny_faces256, tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    summary = train_student(_opts(tiny_pairs, tiny_faces256, run), log=lambda _: None)
    assert summary["finished"] and summary["step"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 4 and all(np.isfinite(r["loss"]) for r in steps)
    assert all((r["sub_resolution"], r["sub_ratio"]) != (64, 1.0) for r in steps)
    val = [r["val"] for r in records if "val" in r][-1]
    assert set(val) == {f"{r}x{c:g}" for r, c in _tiny_config().sub_models()} | {"unedited"}
    assert all(np.isfinite(v["psnr"]) for v in val.values())
    _, meta = read_flat_config(run / WEIGHTS_NAME, "Student")
    assert meta["steps"] == 4 and meta["teacher"]["method"] == "prototype"
    assert isinstance(load_flat(run / WEIGHTS_NAME, Student, WEIGHTS_NAME, "student"), Student)


def test_resume_continues_exactly(tiny_pairs, tiny_faces256, tmp_path):
    torch.manual_seed(0)
    train_student(_opts(tiny_pairs, tiny_faces256, tmp_path / "straight"), log=lambda _: None)
    torch.manual_seed(0)
    first = train_student(_opts(tiny_pairs, tiny_faces256, tmp_path / "split"), log=lambda _: None, stop_after_steps=2)
    assert not first["finished"]
    train_student(_opts(tiny_pairs, tiny_faces256, tmp_path / "split"), resume=True, log=lambda _: None)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for name, t in a["student"].items():
        assert torch.equal(t, b["student"][name]), f"{name} differs after resume"
    with pytest.raises(TrainingError, match="already holds"):
        train_student(_opts(tiny_pairs, tiny_faces256, tmp_path / "straight"), log=lambda _: None)


def test_command_line_refuses_bad_values(tiny_pairs, tiny_faces256, tmp_path):
    args = ["--pairs", str(tiny_pairs), "--data", str(tiny_faces256), "--out", str(tmp_path / "cli")]
    bad = CliRunner().invoke(student_command, [*args, "--resolutions", "100"])
    assert bad.exit_code == 2 and "resolutions" in bad.output
