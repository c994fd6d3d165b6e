"""IPCGAN trainer on a tiny prepared folder of real faces: a few CPU steps, exact resume, export, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceage.methods.ipcgan import IPCGANMethod
from faceage.models.io import read_flat_config
from faceage.training.checkpoint_format import load_checkpoint
from faceage.training.ipcgan_commands import ipcgan_command
from faceage.training.ipcgan_trainer import WEIGHTS_NAME, IPCGANTrainOptions, Sampler, train_ipcgan
from faceage.training.run import TrainingError

TINY = dict(
    size=64,
    batch=4,
    g_channels=4,
    g_blocks=1,
    d_channels=8,
    d_layers=3,
    identity_size=64,
    log_every=1,
    checkpoint_every=2,
    sample_every=3,
    threads=1,
)


def _opts(data, out, **kw) -> IPCGANTrainOptions:
    return IPCGANTrainOptions(data=str(data), out=str(out), **{**TINY, "steps": 4, **kw})


def test_sampler_draws_real_faces_of_the_target_groups():
    ages = np.array([5, 15, 25, 35, 45, 55, 65, 75] * 3, np.float32)
    groups = np.searchsorted([10, 20, 30, 40, 50, 60, 70], ages, side="right")
    s = Sampler(ages, groups, 8, 0.5, seed=3)
    src, tgt, real, wrong = s.draw(7, 16)
    assert (groups[real] == tgt).all() and (wrong != tgt).all() and ((0 <= wrong) & (wrong < 8)).all()
    assert all(np.array_equal(a, b) for a, b in zip(s.draw(7, 16), (src, tgt, real, wrong)))
    with pytest.raises(Exception, match="no training faces"):
        Sampler(ages[:3], groups[:3], 8, 0.5, 0)


def test_train_exports_a_method_and_logs_metrics(tiny_data, tmp_path):
    torch.manual_seed(0)
    summary = train_ipcgan(_opts(tiny_data, tmp_path / "run"), log=lambda _: None)
    run = tmp_path / "run"
    assert summary["finished"] and summary["step"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "d_loss" in r]
    assert len(steps) == 4 and all(np.isfinite(r["g_age"]) and r["g_id"] >= 0 for r in steps)
    assert any("val" in r for r in records) and list(run.glob("samples-*.png"))
    _, meta = read_flat_config(run / WEIGHTS_NAME, "IPCGANGenerator")
    assert meta["grouping"] == "lifespan" and meta["steps"] == 4
    method = IPCGANMethod.from_weights(run / WEIGHTS_NAME)
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert method.edit(faces, np.array([20.0, 60.0]), 70).edited.shape == faces.shape


def test_resume_continues_exactly(tiny_data, tmp_path):
    torch.manual_seed(0)
    train_ipcgan(_opts(tiny_data, tmp_path / "straight"), log=lambda _: None)
    torch.manual_seed(0)
    first = train_ipcgan(_opts(tiny_data, tmp_path / "split"), log=lambda _: None, stop_after_steps=2)
    assert not first["finished"] and first["step"] == 2
    train_ipcgan(_opts(tiny_data, tmp_path / "split"), resume=True, log=lambda _: None)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for key in ("G", "D", "G_ema"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after resume"


def test_run_folder_protection_and_init_from(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_ipcgan(_opts(tiny_data, run, steps=2), log=lambda _: None)
    with pytest.raises(TrainingError, match="already holds"):
        train_ipcgan(_opts(tiny_data, run, steps=2), log=lambda _: None)
    with pytest.raises(TrainingError, match="other options"):
        train_ipcgan(_opts(tiny_data, run, steps=3, lambda_age=2.0), resume=True, log=lambda _: None)
    # a fresh machine: only the exported generator is left
    fresh = tmp_path / "fresh"
    train_ipcgan(_opts(tiny_data, fresh, steps=1, init_from=str(run / WEIGHTS_NAME)), log=lambda _: None)
    _, meta = read_flat_config(fresh / WEIGHTS_NAME, "IPCGANGenerator")
    assert meta["initialised_from"]["steps"] == 2 and meta["total_kimg"] == pytest.approx(0.012)
    with pytest.raises(ValueError, match="config"):
        train_ipcgan(
            _opts(tiny_data, tmp_path / "wider", steps=1, g_channels=8, init_from=str(run / WEIGHTS_NAME)),
            log=lambda _: None,
        )


def test_command_line(tiny_data, tmp_path):
    args = [
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "cli"),
        "--steps",
        "1",
        "--batch",
        "4",
        "--g-channels",
        "4",
        "--g-blocks",
        "1",
        "--d-channels",
        "8",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(ipcgan_command, args)
    # size 128 on 96 px shards is refused with a one-line data error
    assert result.exit_code != 0 and "need" in str(result.exception)
    bad = CliRunner().invoke(ipcgan_command, [*args[:4], "--grouping", "decades"])
    assert bad.exit_code == 2 and "decades" in bad.output


def test_patch_discriminator_and_init_from_an_rgb_head(tiny_data, tmp_path):
    """The first weights' setup (pixel PatchGAN, free RGB head, no DiffAugment) still trains, and a
    luma-head run started from it keeps the body and starts its own head at the identity."""
    old = tmp_path / "old"
    train_ipcgan(_opts(tiny_data, old, steps=2, d_type="patch", head="rgb", diffaugment=False), log=lambda _: None)
    records = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["d_loss"]) for r in records if "d_loss" in r)
    new = tmp_path / "new"
    train_ipcgan(_opts(tiny_data, new, steps=1, init_from=str(old / WEIGHTS_NAME)), log=lambda _: None)
    state = load_checkpoint(new)
    cfg, _ = read_flat_config(new / WEIGHTS_NAME, "IPCGANGenerator")
    assert cfg.head == "luma" and cfg.d_type == "projected"
    before = load_checkpoint(old)["G_ema"]
    # the encoder came from the old run (one step of Adam at 2e-4 moves it very little)
    name = "encoder.0.0.weight"
    assert (state["G"][name] - before[name]).abs().max() < 5e-3
    assert (state["G"][name] - before[name]).abs().max() < (before[name]).abs().max()
