"""Refiner trainer on real teacher pairs (tiny): a few CPU steps, exact resume, export into the method."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceage.models.io import read_flat_config
from faceage.training.checkpoint_format import load_checkpoint
from faceage.training.refiner_commands import refiner_command
from faceage.training.refiner_trainer import (
    WEIGHTS_NAME,
    PairSampler,
    RefinerTrainOptions,
    train_refiner,
)
from faceage.training.run import TrainingError
from faceage.training.teacher_pairs import load_teacher_pairs, warp_by_flow

TINY = dict(
    size=64,
    batch=4,
    channels=4,
    levels=2,
    blocks=1,
    d_channels=8,
    identity_size=64,
    log_every=1,
    checkpoint_every=2,
    sample_every=3,
    threads=1,
)


def _opts(pairs, data, out, **kw) -> RefinerTrainOptions:
    return RefinerTrainOptions(pairs=str(pairs), data=str(data), out=str(out), **{**TINY, "steps": 4, **kw})


def test_warp_by_flow_follows_the_backward_convention():
    face = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(warp_by_flow(face, np.zeros((16, 16, 2), np.float32), 256), face)
    shift = np.zeros((16, 16, 2), np.float32)
    shift[..., 0] = 8.0  # 8 px of a 256 px face = 2 px here: output q shows the input at q + 2
    out = warp_by_flow(face, shift, 256)
    assert np.array_equal(out[:, :60], face[:, 2:62])


def test_teacher_pairs_load_with_their_faces_and_flows(tiny_pairs, tiny_faces256, tmp_path):
    pairs = load_teacher_pairs(tiny_pairs, tiny_faces256, 64, tmp_path)
    assert len(pairs) == 8 and pairs.aged.shape == pairs.faces.shape == (8, 64, 64, 3)
    assert pairs.flow.shape == (8, 64, 64, 2) and pairs.flow_unit == 256 and pairs.mask.shape == (8, 64, 64)
    assert (np.abs(pairs.target - pairs.source) >= 8).all()
    again = load_teacher_pairs(tiny_pairs, tiny_faces256, 64, tmp_path)  # from the cache
    assert np.array_equal(again.aged, pairs.aged) and again.keys == pairs.keys
    assert pairs.subset(np.array([3, 1])).keys == [pairs.keys[3], pairs.keys[1]]
    assert pairs.warped().shape == pairs.faces.shape


def test_sampler_draws_real_faces_of_the_pairs_target_groups():
    target_groups = np.array([0, 3, 7, 5, 1])
    real_groups = np.repeat(np.arange(8), 3)
    s = PairSampler(5, target_groups, real_groups, 8, seed=2)
    pairs, real, wrong = s.draw(4, 16)
    assert (real_groups[real] == target_groups[pairs]).all() and (wrong != target_groups[pairs]).all()
    assert all(np.array_equal(a, b) for a, b in zip(s.draw(4, 16), (pairs, real, wrong)))
    with pytest.raises(Exception, match="no real training faces"):
        PairSampler(5, target_groups, real_groups[:6], 8, 0)


def test_train_logs_exports_and_the_method_uses_it(tiny_pairs, tiny_faces256, tiny_prototypes, tmp_path):
    from faceage.methods.prototype import PrototypeMethod

    torch.manual_seed(0)
    run = tmp_path / "run"
    summary = train_refiner(_opts(tiny_pairs, tiny_faces256, run), log=lambda _: None)
    assert summary["finished"] and summary["step"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "d_loss" in r]
    assert len(steps) == 4 and all(np.isfinite(r["g_age"]) and r["g_id"] >= 0 for r in steps)
    vals = [r["val"] for r in records if "val" in r]
    assert vals and {"prototype", "refined", "luma_change"} <= set(vals[-1])
    assert list(run.glob("samples-*.png"))
    _, meta = read_flat_config(run / WEIGHTS_NAME, "Refiner")
    assert meta["steps"] == 4 and meta["teacher"]["method"] == "prototype" and meta["pairs_count"] == 8
    # the exported refiner runs as the method's last step
    method = PrototypeMethod(tiny_prototypes, loop=False, refine=True, refiner=run / WEIGHTS_NAME)
    assert method.describe()["refine"] is True


def test_resume_continues_exactly(tiny_pairs, tiny_faces256, tmp_path):
    torch.manual_seed(0)
    train_refiner(_opts(tiny_pairs, tiny_faces256, tmp_path / "straight"), log=lambda _: None)
    torch.manual_seed(0)
    first = train_refiner(_opts(tiny_pairs, tiny_faces256, tmp_path / "split"), log=lambda _: None, stop_after_steps=2)
    assert not first["finished"] and first["step"] == 2
    train_refiner(_opts(tiny_pairs, tiny_faces256, tmp_path / "split"), resume=True, log=lambda _: None)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for key in ("R", "D", "R_ema"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after resume"


def test_run_folder_protection_and_init_from(tiny_pairs, tiny_faces256, tmp_path):
    run = tmp_path / "run"
    train_refiner(_opts(tiny_pairs, tiny_faces256, run, steps=2), log=lambda _: None)
    with pytest.raises(TrainingError, match="already holds"):
        train_refiner(_opts(tiny_pairs, tiny_faces256, run, steps=2), log=lambda _: None)
    with pytest.raises(TrainingError, match="other options"):
        train_refiner(_opts(tiny_pairs, tiny_faces256, run, lambda_age=2.0), resume=True, log=lambda _: None)
    fresh = tmp_path / "fresh"  # a fresh machine: only the exported refiner is left
    train_refiner(
        _opts(tiny_pairs, tiny_faces256, fresh, steps=1, init_from=str(run / WEIGHTS_NAME)), log=lambda _: None
    )
    _, meta = read_flat_config(fresh / WEIGHTS_NAME, "Refiner")
    assert meta["initialised_from"]["steps"] == 2 and meta["total_steps"] == 3
    with pytest.raises(ValueError, match="config"):
        train_refiner(
            _opts(
                tiny_pairs, tiny_faces256, tmp_path / "wider", steps=1, channels=8, init_from=str(run / WEIGHTS_NAME)
            ),
            log=lambda _: None,
        )


def test_command_line_refuses_bad_values(tiny_pairs, tiny_faces256, tmp_path):
    args = ["--pairs", str(tiny_pairs), "--data", str(tiny_faces256), "--out", str(tmp_path / "cli")]
    bad = CliRunner().invoke(refiner_command, [*args, "--lambda-residual", "-1"])
    assert bad.exit_code == 2 and "lambda-residual" in bad.output
    missing = CliRunner().invoke(refiner_command, ["--pairs", str(tmp_path / "none"), *args[2:]])
    assert missing.exit_code == 2
