"""The aging benchmark on a tiny prepared folder, with a tiny real method: numbers, report, results file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceage.age_groups import get_grouping
from faceage.bench.aging import TARGET_GROUPS, format_report, read_faces, run_aging_benchmark, update_results_file
from faceage.methods.ipcgan import IPCGANMethod
from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator


def _method(residual: bool) -> IPCGANMethod:
    torch.manual_seed(0)
    g = IPCGANGenerator(IPCGANConfig(resolution=64, g_channels=4, g_blocks=1, residual=residual))
    return IPCGANMethod(g, get_grouping("lifespan"))


def test_read_faces_is_a_seeded_sample(tiny_data):
    a, b = read_faces(tiny_data, "test", 5, seed=1), read_faces(tiny_data, "test", 5, seed=1)
    assert a["keys"] == b["keys"] and a["images"].shape == (5, 96, 96, 3)
    assert read_faces(tiny_data, "test", 5, seed=2)["keys"] != a["keys"]
    assert set(a["ethnicities"]) <= {"white", "black", "asian", "indian", "other"}


def test_identity_method_keeps_identity_and_age(tiny_data, tmp_path):
    # a residual generator at initialisation returns its input: every output is the same person
    result = run_aging_benchmark(
        _method(residual=True), tiny_data, limit=6, log=lambda _: None, gray_faces=2, realism=False
    )
    assert list(result["groups"]) == [str(d) for d in TARGET_GROUPS] and result["faces"] == 6
    ages = [row["age_mean"] for row in result["groups"].values()]
    assert np.allclose(ages, ages[0], atol=1.5)  # identity: the predicted age does not follow the target
    assert all(row["identity_rate"] >= 80 for row in result["groups"].values())
    assert result["method_ms_per_face"] > 0

    report = format_report(result, "faceage bench aging --limit 6", "test machine")
    assert report.startswith("## ipcgan") and "| 50s | 55 |" in report
    path = tmp_path / "aging.md"
    update_results_file(path, report)
    update_results_file(path, report.replace("test machine", "other machine"))
    text = path.read_text()
    assert text.count("## ipcgan") == 1 and "other machine" in text and text.startswith("# Aging benchmark")
    update_results_file(path, "## direction\n\nrow\n")
    assert "## ipcgan" in path.read_text() and "## direction" in path.read_text()


def test_a_destructive_method_fails_identity(tiny_data):
    result = run_aging_benchmark(
        _method(residual=False), tiny_data, limit=4, log=lambda _: None, gray_faces=0, realism=False
    )
    assert all(row["identity_rate"] <= 50 for row in result["groups"].values())


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_bench_command_writes_guards_lag_and_grid(tiny_data, tmp_path, capsys, shared_datasets):
    import json

    from cli_helpers import run_cli
    from faceage.models.io import save_flat

    torch.manual_seed(0)
    g = IPCGANGenerator(IPCGANConfig(resolution=64, g_channels=4, g_blocks=1, residual=True))
    weights = save_flat(g, tmp_path / "g.safetensors", {"grouping": "lifespan"})
    out = tmp_path / "res" / "aging.md"
    args = [
        "bench",
        "aging",
        "--method",
        "ipcgan",
        "--weights",
        weights,
        "--data",
        tiny_data,
        "--split",
        "train",
        "--limit",
        "3",
        "--gray-faces",
        "2",
        "--no-realism",
        "--lag",
        shared_datasets / "lag",
        "--lag-limit",
        "2",
        "--set",
        "batch=2",
        "--threads",
        "1",
        "--out",
        out,
    ]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    result = json.loads((tmp_path / "res" / "aging-ipcgan.json").read_text())
    assert result["options"] == {"batch": "2"} and result["face_size"] == 64 and result["stored_size"] == 96
    assert set(result["guards"]) == {"chroma", "gray", "realism", "passed"} and result["lag"]["people"] == 2
    assert (tmp_path / "res" / "grid_ipcgan.png").stat().st_size > 1000
    text = out.read_text()
    assert "Guards (" in text and "| young -> old |" in text and "grid_ipcgan.png" in text

    code, _, err = run_cli(capsys, *args[:-6], "--lag-limit", "1", "--lag-only", "--out", out)
    assert code == 0, err
    again = json.loads((tmp_path / "res" / "aging-ipcgan.json").read_text())
    assert again["lag"]["people"] == 1 and again["lag_command"] and again["groups"] == result["groups"]
    assert "LAG command (added" in out.read_text() and out.read_text().count("## ipcgan") == 1
    code, _, err = run_cli(capsys, *args[:-6], "--lag-only", "--out", tmp_path / "none" / "aging.md")
    assert code != 0 and "run the bench first" in err

    code, _, err = run_cli(capsys, *args[:-4], "--set", "nonsense", "--out", out)
    assert code != 0 and "KEY=VALUE" in err
    code, _, err = run_cli(capsys, *args[:-4], "--set", "depth=3", "--out", out)
    assert code != 0 and "no option 'depth'" in err
