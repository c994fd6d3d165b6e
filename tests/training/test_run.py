"""The run toolkit every trainer shares: device, resume, metrics log, stopping on a limit or a signal."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from faceage.errors import DeviceError
from faceage.training.run import MetricsLog, StopFlag, TrainingError, resolve_device, resume_in_place


def test_devices_by_name():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cuda: CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="--device tpu: unknown device; use cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_resume_in_place_takes_auto_or_the_run_folder_only(tmp_path):
    out = tmp_path / "run"
    assert resume_in_place(None, out) is False
    assert resume_in_place("auto", out) is True and resume_in_place(str(out), out) is True
    with pytest.raises(TrainingError, match="continues the run in --out"):
        resume_in_place(str(tmp_path / "other"), out)


def test_metrics_log_appends_rounded_lines_and_can_be_off(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write(step=1, loss=0.123456789)
    log.write(step=2, loss=1.0)
    MetricsLog(tmp_path / "other.jsonl", enabled=False).write(step=1)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 0.123457}, {"step": 2, "loss": 1.0}]
    assert not (tmp_path / "other.jsonl").exists()


def test_a_signal_or_the_time_limit_asks_to_stop_and_handlers_come_back():
    before = signal.getsignal(signal.SIGUSR1)
    with StopFlag() as flag:
        assert flag.reason() == ""
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.reason() == f"signal {int(signal.SIGUSR1)}"
    assert signal.getsignal(signal.SIGUSR1) == before
    assert StopFlag(max_minutes=0).reason() == "time limit 0 min"
    assert StopFlag(max_minutes=60).reason() == ""
