"""Age regressor trainer on a tiny prepared folder of real UTKFace photos: learning, exact resume, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceage.data.balance import balanced_weights, decade_index
from faceage.models.io import load_age_regressor
from faceage.training.age_commands import age_command
from faceage.training.age_trainer import (
    DECADES,
    AgeTrainOptions,
    decade_mae,
    epoch_order,
    format_decade_report,
    learning_rate,
    load_split,
    make_optimizer,
    train_age_regressor,
    train_step,
)
from faceage.training.checkpoint_format import load_checkpoint
from faceage.training.run import TrainingError

# A narrow net keeps each trainer test to seconds on a shared 2-core CPU; the mechanics are the same.
TINY_NET = dict(stem_channels=8, channels=(8, 16, 32), blocks=(1, 1, 1))


def _opts(data: Path, out: Path, **kw) -> AgeTrainOptions:
    base = dict(
        data=str(data),
        out=str(out),
        epochs=2,
        batch=8,
        size=64,
        log_every=2,
        checkpoint_every=3,
        eval_batch=16,
        **TINY_NET,
    )
    return AgeTrainOptions(**{**base, **kw})


def test_load_split_decodes_resizes_and_caches(tiny_data, tiny_splits, tmp_path):
    arrays = load_split(tiny_data, "train", 64, cache_dir=tmp_path)
    assert arrays.images.shape == (tiny_splits["train"], 64, 64, 3) and arrays.images.dtype == np.uint8
    assert arrays.ages.dtype == np.float32 and len(arrays.keys) == tiny_splits["train"]
    assert len(list(tmp_path.glob("cache-train-64-*.npz"))) == 1
    again = load_split(tiny_data, "train", 64, cache_dir=tmp_path)
    assert np.array_equal(again.images, arrays.images) and again.keys == arrays.keys


def test_balanced_sampling_favours_rare_decades():
    ages = np.array([25.0] * 90 + [85.0] * 10)
    w = balanced_weights(ages, 1.0)
    assert w[:90].sum() == pytest.approx(0.5) and w[90:].sum() == pytest.approx(0.5)
    w = balanced_weights(ages, 0.5)
    assert w[90:].sum() == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))
    assert np.array_equal(epoch_order(w, 1, 2), epoch_order(w, 1, 2))
    assert not np.array_equal(epoch_order(w, 1, 2), epoch_order(w, 1, 3))
    assert decade_index(np.array([0.0, 9.9, 10.0, 95.0, 116.0])).tolist() == [0, 0, 1, 9, 9]


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [learning_rate(s, 100, 1.0, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[100] == pytest.approx(0.0)


def test_loss_decreases_on_a_fixed_batch(tiny_data, tmp_path):
    from faceage.models.age_regressor import AgeRegressor

    arrays = load_split(tiny_data, "train", 64)
    images, ages = arrays.images[:16], arrays.ages[:16]
    opts = _opts(tiny_data, tmp_path, augment_p=0.0, lr=2e-3, warmup_frac=0.0)
    torch.manual_seed(0)
    model = AgeRegressor(opts.model_config()).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, opts)
    # constant lr: total_steps huge so the cosine barely moves
    losses = [train_step(model, optimizer, images, ages, opts, step, 10**6)["loss"] for step in range(25)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_resume_gives_the_same_result_as_straight_training(tiny_data, tmp_path):
    straight = train_age_regressor(_opts(tiny_data, tmp_path / "a"), log=lambda s: None)
    assert straight["finished"] and straight["step"] == 10  # 40 // 8 = 5 steps x 2 epochs

    first = train_age_regressor(_opts(tiny_data, tmp_path / "b"), log=lambda s: None, stop_after_steps=7)
    assert not first["finished"] and first["step"] == 7  # stopped mid-epoch 2, between checkpoints
    resumed = train_age_regressor(_opts(tiny_data, tmp_path / "b"), resume=True, log=lambda s: None)
    assert resumed["finished"]

    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a["step"] == b["step"] == 10
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["history"] == b["history"]
    assert straight["test"] == resumed["test"]
    assert (tmp_path / "a" / "age_regressor.safetensors").read_bytes() == (
        tmp_path / "b" / "age_regressor.safetensors"
    ).read_bytes()
    # the exported weights load strictly into a fresh model
    assert load_age_regressor(tmp_path / "a" / "age_regressor.safetensors").cfg.input_size == 64
    meta = json.loads((tmp_path / "a" / "age_regressor.json").read_text())["training"]
    assert meta["test"]["mae"] == pytest.approx(straight["test"]["mae"], abs=1e-3) and meta["images_seen"] % 8 == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert set(report["test"]["decades"]) <= set(DECADES) and report["test"]["split"] == "test"


def test_run_folder_is_not_overwritten_and_resume_refuses_other_options(tiny_data, tmp_path):
    train_age_regressor(_opts(tiny_data, tmp_path), log=lambda s: None, stop_after_steps=1)
    with pytest.raises(TrainingError, match="--resume"):
        train_age_regressor(_opts(tiny_data, tmp_path), log=lambda s: None)
    with pytest.raises(TrainingError, match="lr: 0.002 -> 0.001"):
        train_age_regressor(_opts(tiny_data, tmp_path, lr=1e-3), resume=True, log=lambda s: None)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_age_regressor(_opts(tiny_data, tmp_path / "empty"), resume=True, log=lambda s: None)


def test_decade_mae_and_its_report_format():
    ages = np.array([5.0, 7.0, 25.0, 95.0])
    pred = np.array([6.0, 4.0, 25.0, 85.0])
    m = decade_mae(pred, ages)
    assert m["n"] == 4 and m["mae"] == pytest.approx(14 / 4)
    assert list(m["decades"]) == ["0s", "20s", "90+"]
    assert m["decades"]["0s"] == {"n": 2, "mae": 2.0, "bias": -1.0}
    assert m["balanced_mae"] == pytest.approx((2.0 + 0.0 + 10.0) / 3)
    lines = format_decade_report(m, "test").splitlines()
    assert lines[0] == "test"
    assert lines[1].split() == ["decade", "n", "MAE", "bias"]
    assert lines[2].split() == ["0s", "2", "2.00", "-1.00"]
    assert lines[4].split() == ["90+", "1", "10.00", "-10.00"]
    assert lines[5].split() == ["all", "4", "3.50"]
    assert lines[6].split() == ["balanced", "4.00"]


def test_command_line_runs_and_reports_user_errors(tiny_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        age_command,
        ["--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch", "16", "--size", "64"],
    )
    assert result.exit_code == 0, result.output
    assert "balanced" in result.output and (tmp_path / "run" / "age_regressor.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "options.json").read_text())["batch"] == 16
    result = runner.invoke(age_command, ["--data", str(tiny_data), "--out", str(tmp_path / "run"), "--size", "96"])
    assert result.exit_code == 2 and "'96' is not one of" in result.output
