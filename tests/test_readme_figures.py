"""The README's measured figures for the default method against the committed benchmark results:
a rerun of ``faceage bench aging`` that changes the numbers must change the README too (and a README
edit cannot invent them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_row(prefix: str) -> str:
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"README has {len(rows)} rows starting {prefix!r}"
    return rows[0]


def results(method: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"aging-{method}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "method, prefix", [("prototype", "| `prototype` (default"), ("ipcgan", "| `ipcgan` (experimental")]
)
def test_readme_test_split_row_shows_the_committed_benchmark(method, prefix):
    bench = results(method)
    row = readme_row(prefix)
    assert f"on {bench['faces']} test faces" in row
    ages = "/".join(f"{bench['groups'][key]['age_mean']:.1f}" for key in ("0", "10", "20", "30", "50"))
    assert f"independent age {ages}" in row
    assert f"unedited input {bench['source_age_mean']:.1f}" in row


def test_readme_lag_row_shows_the_committed_prototype_benchmark():
    lag = results("prototype")["lag"]
    row = readme_row("| `prototype` on real people (LAG")
    assert f"LAG, {lag['aligned']} people" in row
    for key in ("young_to_old", "old_to_young"):
        d = lag[key]
        assert f"{d['similarity_unedited']:.3f} -> {d['similarity_edited']:.3f} (gain {d['gain_mean']:+.3f})" in row, (
            key
        )
        assert f"{d['share_closer']:.1f} %" in row, key
        assert f"age error {d['age_error_unedited']:.1f} -> {d['age_error_edited']:.1f}" in row, key
