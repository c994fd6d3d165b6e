from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from faceage.bench.commands import bench
from faceage.training.checkpoint_format import list_checkpoints, load_checkpoint
from faceage.training.commands import train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "--resolution",
    "32",
    "--channel-max",
    "32",
    "--batch",
    "4",
    "--sub-res",
    "16,32",
    "--device",
    "cpu",
    "--workers",
    "1",
    "--log-every",
    "1",
    "--ckpt-kimg",
    "0",
    "--fd-n",
    "10",
]


def test_dry_run_and_flag_checks(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        train,
        ["gan", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--dry-run", "--gamma", "0.5", "--aug", "none"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["config"]["r1_gamma"] == 0.5 and out["config"]["augment"]["ops"] == []
    assert out["explicit"] == {"r1_gamma": 0.5, "augment.ops": []}
    res = runner.invoke(
        train, ["gan", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--resolution", "32", "--sub-res", "64"]
    )
    assert res.exit_code != 0 and "exceed" in res.output


def test_train_resume_export_bench(face_shards, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(
        train, ["gan", "--data", str(face_shards), "--out", str(run), *TINY, "--max-steps", "3", "--fd-kimg", "0.008"]
    )
    assert res.exit_code == 0, res.output
    assert "FD @" in res.output
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = {m["kind"] for m in metrics}
    assert {"train", "fd", "checkpoint", "stop"} <= kinds
    fd = next(m for m in metrics if m["kind"] == "fd")
    assert fd["fd_r32_c1"] > 0 and "fd_r16_c0.25" in fd
    train_rec = next(m for m in metrics if m["kind"] == "train")
    assert train_rec["kimg_per_min"] > 0 and "ada_p" in train_rec
    assert json.loads((run / "options.json").read_text())["config"]["resolution"] == 32
    # resume: auto continues from the checkpoint, explicit overrides are recorded.
    res = runner.invoke(
        train,
        [
            "gan",
            "--data",
            str(face_shards),
            "--out",
            str(run),
            *TINY,
            "--max-steps",
            "5",
            "--fd-kimg",
            "0",
            "--resume",
            "auto",
            "--compact-to",
            str(tmp_path / "out" / "ckpt"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "checkpoint at step 3" in res.output
    assert load_checkpoint(list_checkpoints(run)[-1])["progress"]["step"] == 5
    compact = list_checkpoints(tmp_path / "out" / "ckpt")
    assert len(compact) == 1 and "compact" in load_checkpoint(compact[0])
    res = runner.invoke(train, ["compact-gan", str(run), "--out", str(tmp_path / "c2"), "--with-optimizer"])
    assert res.exit_code == 0 and "compact checkpoint" in res.output, res.output
    # export the average generator and benchmark it (tiny numbers; checks the plumbing).
    res = runner.invoke(train, ["export-gan", str(run), "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    md = tmp_path / "results" / "gan.md"
    res = runner.invoke(
        bench,
        [
            "gan",
            "--weights",
            str(tmp_path / "g"),
            "--data",
            str(face_shards),
            "--n",
            "12",
            "--n-faces",
            "3",
            "--resolutions",
            "16,32",
            "--ratios",
            "0.5,1",
            "--device",
            "cpu",
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(md),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(md.with_suffix(".json").read_text())
    assert [(r["resolution"], r["ratio"]) for r in report["rows"]] == [(32, 1.0), (32, 0.5), (16, 1.0), (16, 0.5)]
    for row in report["rows"]:
        assert row["fd"] >= 0
        assert ("cons_mse" in row) == ((row["resolution"], row["ratio"]) != (32, 1.0))
    assert "| resolution |" in md.read_text()
    assert list((tmp_path / "cache").glob("fdstats-*.npz"))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--resume", "/nonexistent/x"], "/nonexistent/x does not exist"),
        (["--ratios", "0,1"], "channel ratios must be in (0, 1]"),
        (["--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["--max-minutes", "0"], "0.0 is not in the range x>0"),
    ],
)
def test_bad_options_fail_cleanly(face_shards, tmp_path, bad, message):
    res = CliRunner().invoke(train, ["gan", "--data", str(face_shards), "--out", str(tmp_path), *TINY, *bad])
    assert res.exit_code == 2 and message in res.output, res.output


@pytest.mark.parametrize("spelling", ["--max-minutes", "--minutes"])
def test_every_trainer_takes_the_same_run_options(tmp_path, spelling):
    """--max-minutes (old spelling --minutes, hidden), --resume alone meaning auto, --device auto|cpu|cuda."""
    res = CliRunner().invoke(
        train,
        [
            "gan",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
            "--dry-run",
            spelling,
            "7",
            "--device",
            "cpu",
            "--resume",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["run"]["max_minutes"] == "7.0" and out["resume"] == "auto" and out["run"]["device"] == "cpu"
    for name in ("gan", "age", "ipcgan"):
        text = CliRunner().invoke(train, [name, "--help"]).output
        assert all(option in text for option in ("--device [auto|cpu|cuda]", "--max-minutes", "--resume [auto|PATH]"))
        assert "--minutes" not in text.replace("--max-minutes", "")


def test_a_trainer_that_resumes_in_place_refuses_another_folder(face_shards, tmp_path):
    res = CliRunner().invoke(
        train,
        [
            "age",
            "--data",
            str(face_shards),
            "--out",
            str(tmp_path / "a"),
            "--device",
            "cpu",
            "--resume",
            str(tmp_path / "elsewhere"),
        ],
    )
    assert res.exit_code != 0
    assert "continues the run in --out" in str(res.exception) + res.output
