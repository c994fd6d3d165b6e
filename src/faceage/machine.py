"""What machine a measurement ran on (named in benchmark results, latency caches and manifests), and
which device a command may run on."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from faceage.errors import DeviceError


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device) -> str:
    """The GPU's name for a CUDA device, else the CPU's model name."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


_DEVICE_NAME = re.compile(r"(cpu|cuda)(?::(\d+))?\Z")


def check_device(name: str) -> str:
    """``--device`` of every command (``auto``, ``cpu``, ``cuda``, ``cuda:N``) as the device to use,
    or ``DeviceError`` with one line: an unknown name, or CUDA that this machine or torch build lacks.
    One check, so ``faceage age``, ``serve`` and the trainers refuse the same way before any work."""
    import torch

    text = str(name).strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = _DEVICE_NAME.match(text)
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise DeviceError(f"--device {text or repr(name)}: unknown device; use cpu, cuda or cuda:N")
    if match.group(1) == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceError(f"--device {text}: CUDA is not available ({why}); use --device cpu")
    index = int(match.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {text}: CUDA is not available (this machine has {torch.cuda.device_count()} GPU(s))"
        )
    return text
