"""Scanning UTKFace and AAF: labels from names/CSV, normalised conventions, rejects, duplicates."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from faceage.data import datasets as ds
from faceage.data.datasets import Record, find_duplicates, scan_aaf, scan_utkface
from faceage.errors import DatasetError


def test_scan_utkface_labels_and_rejects(utk_dir: Path, names: dict) -> None:
    UTK_FILES, UTK_ODD_BUT_VALID = names["utk"], names["utk_odd"]
    records, rejects = scan_utkface(utk_dir)
    by_file = {r.file: r for r in records}
    assert set(by_file) == set(UTK_FILES) | {UTK_ODD_BUT_VALID}
    r = by_file["80_1_1_20170116153903211.jpg.chip.jpg"]
    assert (r.source, r.age, r.gender, r.ethnicity, r.person_id) == ("utkface", 80, 1, "black", None)
    assert r.decade == "80-89" and not r.ethnicity_assumed
    assert r.key == "utk-80_1_1_20170116153903211"
    assert by_file[UTK_ODD_BUT_VALID].key == "utk-24_0_1_20170116220224657-"
    assert by_file[UTK_ODD_BUT_VALID].ethnicity == "black"
    reasons = {Path(j.path).name: j.reason for j in rejects}
    assert reasons == {
        "61_1_20170109150557335.jpg.chip.jpg": ds.MALFORMED_NAME,
        "not_a_label.jpg": ds.MALFORMED_NAME,
        "25_0_0_20170104011300160.png": ds.MALFORMED_NAME,
        "130_0_0_20170104011300160.jpg.chip.jpg": ds.AGE_OUT_OF_RANGE,
    }
    assert all(j.source == "utkface" for j in rejects)
    # the parent folder (holding images/) works too
    assert scan_utkface(utk_dir.parent)[0] == records


def test_scan_aaf_labels_and_rejects(aaf_dir: Path, names: dict) -> None:
    records, rejects = scan_aaf(aaf_dir)
    by_file = {r.file: r for r in records}
    assert set(by_file) == set(names["aaf"])
    girl, man = by_file["00000A02.jpg"], by_file["12725A61.jpg"]
    assert (girl.age, girl.gender, girl.person_id, girl.key) == (2, 1, "00000", "aaf-00000A02")
    # labels.csv "male" and splits "1" (AAF's 1 = male) both become our 0 = male
    assert (man.age, man.gender, man.ethnicity, man.ethnicity_assumed) == (61, 0, "asian", True)
    reasons = {Path(j.path).name: j.reason for j in rejects}
    assert reasons == {
        "99999A05.jpg": ds.MISSING_LABEL_ROW,
        "1234A5.jpg": ds.MALFORMED_NAME,
        "88888A30.jpg": ds.LABEL_CONFLICT,
        "77777A30.jpg": ds.MALFORMED_LABEL,
        "66666A40.jpg": ds.LABEL_CONFLICT,
        "55555A50.jpg": ds.MISSING_IMAGE,
    }


def test_missing_or_wrong_folders_raise_one_line(tmp_path: Path) -> None:
    for scan in (scan_utkface, scan_aaf):
        with pytest.raises(DatasetError, match="not found") as info:
            scan(tmp_path / "nope")
        assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no UTKFace images"):
        scan_utkface(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not an AAF folder"):
        scan_aaf(tmp_path / "empty")
    (tmp_path / "empty" / "images").mkdir()
    (tmp_path / "empty" / "labels.csv").write_text("name,years\n")
    with pytest.raises(DatasetError, match="lacks the columns"):
        scan_aaf(tmp_path / "empty")


def test_duplicates_dropped_and_conflicts_rejected(utk_dir: Path, names: dict) -> None:
    UTK_FILES = names["utk"]
    src = utk_dir / UTK_FILES[0]  # 25, male, white
    shutil.copyfile(src, utk_dir / "25_0_0_20990101000000000.jpg.chip.jpg")  # same labels: keep one
    shutil.copyfile(utk_dir / UTK_FILES[1], utk_dir / "35_0_0_20990101000000000.jpg.chip.jpg")  # age differs
    records, _ = scan_utkface(utk_dir)
    kept, rejects = find_duplicates(records)
    reasons = Counter(j.reason for j in rejects)
    assert reasons == {ds.DUPLICATE_IMAGE: 1, ds.DUPLICATE_CONFLICT: 2}
    kept_names = {r.file for r in kept}
    assert UTK_FILES[1] not in kept_names and "35_0_0_20990101000000000.jpg.chip.jpg" not in kept_names
    assert len(kept) == len(records) - 3 and UTK_FILES[0] in kept_names


def test_full_label_lists_scan_without_decoding(shared_datasets: Path) -> None:
    utk, utk_rejects = scan_utkface(shared_datasets / "utkface" / "images")
    aaf, aaf_rejects = scan_aaf(shared_datasets / "aaf")
    assert len(utk) + len(utk_rejects) == 23708 and len(utk_rejects) == 3  # 3 names lack the race
    assert len(aaf) == 13322 and aaf_rejects == []
    ds.check_unique_keys(utk + aaf)
    assert Counter(r.gender for r in aaf) == {1: 7381, 0: 5941}  # labels.csv: 7381 female
    assert {r.ethnicity for r in utk} == set(ds.ETHNICITIES)
    assert min(r.age for r in utk) == 1 and max(r.age for r in utk) == 116


def test_decade_bins() -> None:
    assert [ds.decade_of(a) for a in (0, 9, 10, 89, 90, 116)] == ["0-9", "0-9", "10-19", "80-89", "90+", "90+"]


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    a = Record("utkface", tmp_path / "1_0_0_x.jpg", "1_0_0_x.jpg", "utk-1_0_0_x", 1, 0, "white")
    with pytest.raises(DatasetError, match="map to the sample key"):
        ds.check_unique_keys([a, a])
