"""`--device` in every command: one line and a non-zero exit for a device that is unknown or not on
this machine, and a note where a method runs somewhere else than asked (faceage.machine.check_device)."""

from __future__ import annotations

import pytest
import torch

from cli_helpers import run_cli
from faceage.assets import EXAMPLE_PHOTO
from faceage.errors import DeviceError
from faceage.machine import check_device

NO_CUDA = not torch.cuda.is_available()


def test_device_names():
    assert check_device("cpu") == "cpu"
    assert check_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("banana", "tpu", "cuda:x", "meta", "cuda:-1", ""):
        with pytest.raises(DeviceError, match=r"--device .*: unknown device; use cpu, cuda or cuda:N"):
            check_device(name)
    if NO_CUDA:
        for name in ("cuda", "cuda:0", "cuda:3"):
            with pytest.raises(DeviceError, match=rf"--device {name}: CUDA is not available"):
                check_device(name)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.strip()]
    return line


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("method", ["ipcgan", "prototype"])
def test_age_on_a_missing_gpu_is_one_line(capsys, tmp_path, tiny_weights, method):
    weights = ("--weights", tiny_weights) if method == "ipcgan" else ()
    code, _, err = run_cli(capsys, "age", EXAMPLE_PHOTO, "--to", "60", "-o", tmp_path, "--method", method, *weights,
                           "--device", "cuda")  # fmt: skip
    assert code == 1
    assert one_error_line(err).startswith("error: --device cuda: CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_serve_with_an_unknown_device_is_one_line(capsys):
    code, _, err = run_cli(capsys, "serve", "--device", "banana", "--port", "0")
    assert code != 0
    assert "--device banana: unknown device" in one_error_line(err)


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_trainers_on_a_missing_gpu_say_the_same(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "age", "--data", tmp_path, "--out", tmp_path / "run", "--device", "cuda")
    assert code == 1 and "--device cuda: CUDA is not available" in one_error_line(err)


def test_a_cpu_only_method_says_where_it_runs():
    from faceage.methods.registry import where_it_runs

    assert where_it_runs("prototype", "cpu") is None
    assert where_it_runs("ipcgan", "cpu") is None
    note = where_it_runs("prototype", "cuda")
    assert note is not None and "prototype runs on the CPU" in note
    note = where_it_runs("ipcgan", "cuda:0")
    assert note is not None and "ipcgan runs on cuda:0" in note and "face detection" in note
