"""The train/val/test split: deterministic, stratified, >= 2,000 test faces on the real label lists."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from faceage.data import split as sp
from faceage.data.datasets import DECADES, Record, scan_aaf, scan_utkface


@pytest.fixture(scope="module")
def real_records(shared_datasets: Path) -> list[Record]:
    return scan_utkface(shared_datasets / "utkface" / "images")[0] + scan_aaf(shared_datasets / "aaf")[0]


def _synthetic(n: int) -> list[Record]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        age, eth = rng.randint(1, 99), rng.choice(("white", "black", "asian"))
        name = f"{age}_{i % 2}_0_{i:017d}.jpg.chip.jpg"
        out.append(Record("utkface", Path("/a") / name, name, f"utk-{i}", age, i % 2, eth))
    return out


def test_same_split_in_any_order_and_any_folder() -> None:
    records = _synthetic(3000)
    first = sp.assign_splits(records)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert sp.assign_splits(shuffled) == first
    moved = [replace(r, path=Path("/elsewhere/on/another/machine") / r.file) for r in records]
    assert sp.assign_splits(moved) == first
    assert sp.assign_splits(records, salt="other") != first


def test_val_fraction_never_moves_test_faces() -> None:
    records = _synthetic(3000)
    a = sp.assign_splits(records, val_fraction=0.03)
    b = sp.assign_splits(records, val_fraction=0.10)
    assert {k for k, s in a.items() if s == "test"} == {k for k, s in b.items() if s == "test"}


def test_small_strata_get_test_members_and_keep_training_ones() -> None:
    records = _synthetic(60)  # strata of 0-3 faces
    assignment = sp.assign_splits(records)
    strata = defaultdict(list)
    for r in records:
        strata[sp.stratum(r)].append(assignment[r.key])
    for splits in strata.values():
        if len(splits) >= 2:
            assert "test" in splits and "train" in splits
        else:
            assert splits == ["train"]


def test_real_split_is_stratified_with_2000_test_faces(real_records: list[Record]) -> None:
    assignment = sp.assign_splits(real_records)
    counts = sp.split_counts(real_records, assignment)
    n_test = sum(counts["test"]["source"].values())
    # >= 2,000 even after ~3% duplicates and a few % alignment rejects
    assert n_test >= 2250
    assert sum(counts["val"]["source"].values()) >= 1000
    for decade in DECADES:
        total = sum(counts[s]["decade"][decade] for s in sp.SPLITS)
        share = counts["test"]["decade"][decade] / total
        assert abs(share - sp.TEST_FRACTION) < 0.01, (decade, share)
    for source in ("utkface", "aaf"):
        total = sum(counts[s]["source"][source] for s in sp.SPLITS)
        assert abs(counts["test"]["source"][source] / total - sp.TEST_FRACTION) < 0.005
    ethnic = Counter(r.ethnicity for r in real_records)
    for eth, n in ethnic.items():
        assert abs(counts["test"]["ethnicity"][eth] / n - sp.TEST_FRACTION) < 0.01, eth
    assert counts["test"]["decade"]["90+"] >= 8  # the oldest are benchmarked too
