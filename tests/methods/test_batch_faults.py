"""A small run of benchmarks/batch_faults.py: a batch under random kills, interrupts, a full disk and
unreadable files, then a resume; every input aged with a complete output of its own or listed as
failed, nothing twice (the script checks, and exits non-zero otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "batch_faults.py"


@pytest.mark.slow
def test_a_small_batch_under_random_faults_loses_nothing_and_does_nothing_twice(tmp_path, shared_datasets):
    results = tmp_path / "batch_faults.md"
    command = [sys.executable, str(BENCH), "--photos", "16", "--faults", "2", "--seed", "1", "--results", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    text = results.read_text()
    for line in ("| neither, or both | 0 |", "| inputs recorded as finished more than once | 0 |"):
        assert line in text, text
    assert "| bad-for-good inputs listed as failed | 6 of 6 |" in text, text
