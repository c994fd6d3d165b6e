"""Real write faults for tests: a child process whose files may not grow past a size (RLIMIT_FSIZE, the
kernel's own limit: writes past it fail or come out short, as on a nearly full disk), and a tiny tmpfs
(a really full disk; needs root, skipped otherwise)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _limit(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def run_limited(code: str, max_bytes: int, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code args...`` with files limited to ``max_bytes``; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        preexec_fn=_limit(max_bytes),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "64k"):
    """A ``size`` tmpfs mounted on ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
