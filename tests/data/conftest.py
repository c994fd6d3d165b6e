"""Small dataset folders in tmp_path made of real UTKFace/AAF files plus deliberately broken ones."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

# Real files (never copied into the repo: tests link them into tmp_path).
UTK_FILES = (
    "25_0_0_20170104011300160.jpg.chip.jpg",
    "1_0_0_20161219140623097.jpg.chip.jpg",
    "80_1_1_20170116153903211.jpg.chip.jpg",
)
AAF_FILES = ("06000A46.jpg", "00000A02.jpg", "12725A61.jpg")
# A UTKFace file with a space before ".jpg" in its datetime: labels intact, so accepted.
UTK_ODD_BUT_VALID = "24_0_1_20170116220224657 .jpg.chip.jpg"


def link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


@pytest.fixture()
def utk_dir(shared_datasets: Path, tmp_path: Path) -> Path:
    """UTKFace-like images/: 3 good files, one odd-but-valid name, 3 malformed names, 1 out-of-range age."""
    real = shared_datasets / "utkface" / "images"
    images = tmp_path / "utkface" / "images"
    for name in UTK_FILES + (UTK_ODD_BUT_VALID,):
        link(real / name, images / name)
    some = real / UTK_FILES[0]
    link(some, images / "61_1_20170109150557335.jpg.chip.jpg")  # race missing
    link(some, images / "not_a_label.jpg")
    link(some, images / "25_0_0_20170104011300160.png")  # not a .jpg
    link(some, images / "130_0_0_20170104011300160.jpg.chip.jpg")  # age out of range
    (images / ".DS_Store").write_bytes(b"hidden files are ignored")
    return images


@pytest.fixture()
def aaf_dir(shared_datasets: Path, tmp_path: Path) -> Path:
    """AAF-like folder: 3 good files plus one of each label problem."""
    real = shared_datasets / "aaf"
    root = tmp_path / "aaf"
    with open(real / "labels.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = {row[0]: row for row in reader}
    out_rows = [rows[n] for n in AAF_FILES]
    for name in AAF_FILES:
        link(real / "images" / name, root / "images" / name)
    some = real / "images" / AAF_FILES[0]
    link(some, root / "images" / "99999A05.jpg")  # no label row
    link(some, root / "images" / "1234A5.jpg")  # malformed name
    link(some, root / "images" / "88888A30.jpg")
    out_rows.append(["88888A30.jpg", "31", "male"] + rows[AAF_FILES[0]][3:])  # age differs from name
    link(some, root / "images" / "77777A30.jpg")
    out_rows.append(["77777A30.jpg", "30", "unknown"] + rows[AAF_FILES[0]][3:])  # bad gender
    link(some, root / "images" / "66666A40.jpg")
    out_rows.append(["66666A40.jpg", "40", "female"] + rows[AAF_FILES[0]][3:])  # splits say male
    out_rows.append(["55555A50.jpg", "50", "male"] + rows[AAF_FILES[0]][3:])  # no image
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(out_rows)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("06000A46.jpg 0\n12725A61.jpg 1\n66666A40.jpg 1\n")
    (root / "splits" / "val.txt").write_text("00000A02.jpg 0\n")
    return root


@pytest.fixture()
def names() -> dict:
    """The real file names used by the folders above (tests cannot import conftest)."""
    return {"utk": UTK_FILES, "aaf": AAF_FILES, "utk_odd": UTK_ODD_BUT_VALID}


@pytest.fixture()
def real_six(shared_datasets: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Only good files: 3 UTKFace and 3 AAF photos (with their labels.csv rows)."""
    utk, aaf = tmp_path / "real_utk", tmp_path / "real_aaf"
    for name in UTK_FILES:
        link(shared_datasets / "utkface" / "images" / name, utk / name)
    for name in AAF_FILES:
        link(shared_datasets / "aaf" / "images" / name, aaf / "images" / name)
    lines = (shared_datasets / "aaf" / "labels.csv").read_text().splitlines()
    (aaf / "labels.csv").write_text(
        "\n".join([lines[0]] + [line for line in lines if line.split(",")[0] in AAF_FILES]) + "\n"
    )
    return utk, aaf
