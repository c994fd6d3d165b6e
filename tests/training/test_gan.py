from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from gan_fixtures import tiny_config

from faceage.models.io import load_model
from faceage.models.stylegan2 import Generator
from faceage.training.checkpoint_format import list_checkpoints, load_checkpoint
from faceage.training.dataset import ShardImageDataset, make_loader, to_float_images
from faceage.training.gan import (
    GANConfig,
    RunOptions,
    compact_checkpoint,
    create_state,
    export_ema,
    sample_submodel,
    train,
    train_step,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sub_model_sampling_covers_all_but_full():
    cfg = GANConfig()
    subs = cfg.sub_models()
    assert len(subs) == 11 and (128, 1.0) not in subs
    seen = {sample_submodel(cfg, step) for step in range(500)}
    assert seen == set(subs)
    assert sample_submodel(cfg, 17) == sample_submodel(cfg, 17)


def test_config_round_trip_and_validation():
    cfg = tiny_config()
    assert GANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="sub resolutions"):
        GANConfig(resolution=32, sub_resolutions=(64,))
    with pytest.raises(ValueError, match="unknown GANConfig"):
        GANConfig.from_dict({"bogus": 1})


def test_training_steps_on_real_faces(face_shards):
    torch.manual_seed(0)
    cfg = tiny_config(r1_interval=2, pl_weight=1.0, pl_interval=2)
    state = create_state(cfg, torch.device("cpu"))
    before_g = [p.detach().clone() for p in state.G.parameters()]
    before_d = [p.detach().clone() for p in state.D.parameters()]
    before_ema = [p.detach().clone() for p in state.G_ema.parameters()]
    ds = ShardImageDataset(face_shards, resolution=32)
    batches = iter(make_loader(ds, 4, 0, 1, 0, 0, 0, False))
    seen, keys = set(), set()
    for _ in range(4):
        stats = train_step(state, to_float_images(next(batches), torch.device("cpu")))
        for k, v in stats.items():
            assert torch.isfinite(v).all(), k
        seen.add((int(stats["sub_res"]), float(stats["sub_ratio"])))
        keys |= set(stats)
    assert {"loss_d", "r1", "loss_g_full", "loss_g_sub", "cons", "pl"} <= keys
    assert state.step == 4 and state.nimg == 16
    assert all(not torch.equal(a, b) for a, b in zip(before_d, state.D.parameters()) if a.numel() > 1)
    changed_g = sum(not torch.equal(a, b) for a, b in zip(before_g, state.G.parameters()))
    assert changed_g >= len(before_g) - 2  # every layer the full model uses is trained
    assert any(not torch.equal(a, b) for a, b in zip(before_ema, state.G_ema.parameters()))
    assert state.G.w_avg.abs().sum() > 0
    assert state.ada.p != cfg.augment.p_init  # one ADA update after 4 steps
    assert len(seen) >= 2


def _run(data, out, steps, resume=None, **cfg_over):
    cfg = tiny_config(r1_interval=2, pl_weight=1.0, pl_interval=3, **cfg_over)
    opts = RunOptions(
        data=data,
        out=out,
        kimg=1e9,
        max_steps=steps,
        device="cpu",
        workers=0,
        log_every=1,
        ckpt_kimg=0,
        fd_kimg=0,
        grid_seeds=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(cfg, opts, resume=resume, echo=lambda s: None)


def _losses(run_dir, steps):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in rows if r["kind"] == "train"}
    return [{k: by_step[s][k] for k in ("loss_d", "loss_g_full", "loss_g_sub", "cons", "ada_p")} for s in steps]


def test_exact_resume_bit_for_bit(face_shards, tmp_path):
    straight = _run(face_shards, tmp_path / "a", steps=7)
    _run(face_shards, tmp_path / "b", steps=3)
    resumed = _run(face_shards, tmp_path / "b", steps=7, resume="auto")
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["progress"] == b["progress"] and a["progress"]["step"] == 7
    for name in ("G", "D", "G_ema"):
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f"{name}.{k}"
    for name in ("opt_G", "opt_D"):
        for idx, st in a[name]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[name]["state"][idx][k]), f"{name}[{idx}].{k}"
    assert a["augment"] == b["augment"]
    assert _losses(tmp_path / "a", range(4, 8)) == _losses(tmp_path / "b", range(4, 8))
    assert (tmp_path / "b" / "options.json").is_file() and list((tmp_path / "b").glob("launch-*.json"))
    assert list((tmp_path / "b").glob("samples-*.png"))


def test_export_and_weights_only_resume(face_shards, tmp_path):
    last = _run(face_shards, tmp_path / "run", steps=2)
    folder = export_ema(last, tmp_path / "g_ema")
    G = load_model(folder, expect=Generator)
    saved = load_checkpoint(last)["G_ema"]
    assert all(torch.equal(v.half().float(), G.state_dict()[k].float()) for k, v in saved.items())
    assert (folder / "model.safetensors").stat().st_size < 0.6 * sum(v.numel() * 4 for v in saved.values())
    cfg = tiny_config(r1_interval=2, pl_weight=1.0, pl_interval=3)
    opts = RunOptions(
        data=face_shards,
        out=tmp_path / "restart",
        kimg=1e9,
        max_steps=1,
        device="cpu",
        workers=0,
        ckpt_kimg=0,
        fd_kimg=0,
        grid_seeds=2,
    )
    with pytest.warns(UserWarning, match="weights only"):
        path = train(cfg, opts, resume=str(folder), echo=lambda s: None)
    ckpt = load_checkpoint(path)
    assert ckpt["progress"]["step"] == 1
    launch = json.loads((tmp_path / "restart" / "launch-000000000.json").read_text())
    assert launch["resume"]["mode"] == "weights" and "RE-INITIALISED" in launch["resume"]["notes"][0]


def test_time_limit_stops_with_a_checkpoint(face_shards, tmp_path):
    cfg = tiny_config()
    opts = RunOptions(
        data=face_shards,
        out=tmp_path,
        kimg=1e9,
        max_minutes=0.0,
        device="cpu",
        workers=0,
        ckpt_kimg=0,
        fd_kimg=0,
        grid_seeds=2,
    )
    path = train(cfg, opts, echo=lambda s: None)
    assert path is not None and list_checkpoints(tmp_path)
    stop = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert stop["kind"] == "stop" and "time limit" in stop["reason"]
    assert math.isfinite(stop["time_s"])


def test_compact_checkpoint_resumes_approximately(face_shards, tmp_path):
    from faceage.training.checkpoint_format import checkpoint_files

    last = _run(face_shards, tmp_path / "run", steps=2)
    full_size = sum(f.stat().st_size for f in checkpoint_files(last))
    small = compact_checkpoint(last, tmp_path / "compact")
    assert sum(f.stat().st_size for f in checkpoint_files(small)) < 0.45 * full_size
    ckpt = load_checkpoint(small)
    assert "opt_G" not in ckpt and ckpt["G"]["w_avg"].dtype == torch.float16
    cfg = tiny_config(r1_interval=2, pl_weight=1.0, pl_interval=3)
    opts = RunOptions(
        data=face_shards,
        out=tmp_path / "cont",
        kimg=1e9,
        max_steps=3,
        device="cpu",
        workers=0,
        ckpt_kimg=0,
        fd_kimg=0,
        grid_seeds=2,
    )
    with pytest.warns(UserWarning, match="approximate"):
        path = train(cfg, opts, resume=str(small), echo=lambda s: None)
    assert load_checkpoint(path)["progress"]["step"] == 3
    with_opt = load_checkpoint(compact_checkpoint(last, tmp_path / "compact2", keep_optimizer=True))
    assert with_opt["opt_D"]["state"][0]["exp_avg"].dtype == torch.bfloat16
