"""`faceage age` against the second round of hostile inputs: odd bytes in file names, two inputs
with one name, a closed stdout, a read-only output folder, odd numbers in --to, image formats a
folder scan passed over, and two batches into one output folder. Real files and the tiny generator
from conftest (--method ipcgan --weights)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from faceage.filenames import unescape_name
from faceage.imageio import load_image, read_metadata
from fault_helpers import SRC, tiny_tmpfs


def age_args(tiny_weights, *args) -> tuple:
    return ("age", *args, "--method", "ipcgan", "--weights", tiny_weights, "--no-eval")


def summary_files(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [Path(unescape_name(row["file"])).name for row in csv.DictReader(handle)]


@pytest.fixture
def face_rgb(utk_path) -> np.ndarray:
    return load_image(utk_path)


ODD_NAMES = ["x\x01.jpg", "y\x1b[31m.jpg", os.fsdecode(b"z\xff.jpg"), "w\\.jpg"]


def test_control_characters_and_non_utf8_bytes_in_names_fail_nothing(capsys, tmp_path, tiny_weights, utk_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ["a.jpg", *ODD_NAMES]:
        shutil.copy(utk_path, src / name)
    code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err
    for name in ["a.jpg", *ODD_NAMES]:
        output = out / f"{Path(name).stem}_age60.jpg"
        assert load_image(output).shape == load_image(utk_path).shape
        assert unescape_name(read_metadata(output)["faceage:source"]) == name
    # what reaches the terminal carries no raw control character or undecodable byte
    assert "\x1b" not in stdout and "\x01" not in stdout and "\udcff" not in stdout
    assert "x\\x01.jpg" in stdout and "z\\xff.jpg" in stdout
    assert sorted(summary_files(out / "summary.csv")) == sorted(["a.jpg", *ODD_NAMES])
    code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))  # resume
    assert code == 0 and "skipped 5 of 5 files already done" in stdout, err


def test_a_second_input_of_the_same_name_does_not_replace_the_first_ones_output(
    capsys, tmp_path, tiny_weights, face_rgb
):
    out = tmp_path / "out"
    for folder, rgb in (("A", face_rgb), ("B", face_rgb[:, ::-1].copy())):
        (tmp_path / folder).mkdir()
        Image.fromarray(rgb).save(tmp_path / folder / "x.png")
    code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / "A" / "x.png", "--to", "60", "-o", out))
    assert code == 0, err
    first = (out / "x_age60.png").read_bytes()
    code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / "B" / "x.png", "--to", "60", "-o", out))
    assert code == 1 and "x_age60.png already exists and faceage made it from another input" in err, err
    assert (out / "x_age60.png").read_bytes() == first
    code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / "B", "--to", "60", "-o", out))  # folder mode
    assert code == 1 and "made it from another input" in err, err
    assert (out / "x_age60.png").read_bytes() == first
    # the same input again is still its own: replaced without --overwrite, even after it changed
    Image.fromarray(face_rgb // 2).save(tmp_path / "A" / "x.png")
    code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / "A" / "x.png", "--to", "60", "-o", out))
    assert code == 0, err
    assert (out / "x_age60.png").read_bytes() != first


def test_a_closed_stdout_loses_no_summary_row(tmp_path, tiny_weights, utk_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    names = [f"p{i}.jpg" for i in range(4)]
    for name in names:
        shutil.copy(utk_path, src / name)
    command = [sys.executable, "-m", "faceage.cli", *map(str, age_args(tiny_weights, src, "--to", "60", "-o", out))]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "error" not in err, err
    assert summary_files(out / "summary.csv") == names
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"p{i}_age60.jpg" for i in range(4)]


def test_a_read_only_output_folder_says_what_is_true_of_the_summary(capsys, tmp_path, tiny_weights, utk_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(utk_path, src / "a.jpg")
    with tiny_tmpfs(tmp_path / "disk", "64k") as out:
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        code, _, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))
        assert not (out / "summary.csv").exists()
    assert code == 1 and "Traceback" not in err
    assert "rows appended so far" not in err
    assert "no summary was written" in err, err


@pytest.mark.parametrize(
    ("text", "label"), [("-0", "0"), ("1e-320", "0"), ("42.54", "42.5"), ("0060.00", "60"), ("+7", "7")]
)
def test_odd_numbers_in_to_give_plain_ages_in_names_and_metadata(capsys, tmp_path, tiny_weights, utk_path, text, label):
    photo, out = tmp_path / "a.jpg", tmp_path / "out"
    shutil.copy(utk_path, photo)
    code, stdout, err = run_cli(capsys, *age_args(tiny_weights, photo, "--to", text, "-o", out, "--json"))
    assert code == 0, err
    assert [p.name for p in out.iterdir()] == [f"a_age{label}.jpg"]
    target = read_metadata(out / f"a_age{label}.jpg")["faceage:target_age"]  # after the method's clamping
    assert float(target) >= float(label) and not {"-", "e"} & set(target) and round(float(target), 1) == float(target)
    assert json.loads(stdout)["ages"] == [float(label)]


def test_ages_that_round_to_one_age_are_refused(capsys, tmp_path, utk_path):
    code, _, err = run_cli(capsys, "age", utk_path, "--to", "0,-0", "-o", tmp_path)
    assert code == 2 and "each age once" in err
    code, _, err = run_cli(capsys, "age", utk_path, "--to", "30.01,30.04", "-o", tmp_path)
    assert code == 2 and "each age once" in err


# formats Pillow writes that a folder scan must take, as when the file is named directly
SCANNED_FORMATS = [".avif", ".ico", ".ppm", ".pgm", ".pnm", ".tga", ".pcx", ".jfif", ".qoi"]


def test_a_folder_scan_takes_every_format_that_works_when_named(capsys, tmp_path, tiny_weights, face_rgb):
    from faceage.methods.commands import collect_jobs

    src = tmp_path / "in"
    src.mkdir()
    written = []
    for suffix in SCANNED_FORMATS:
        path = src / f"p{suffix.replace('.', '_')}{suffix}"
        try:
            Image.fromarray(face_rgb).save(path)
        except (KeyError, OSError, ValueError):  # this Pillow build cannot write it
            continue
        written.append(path.name)
    assert {".avif", ".ico", ".ppm", ".tga", ".pcx"} <= {Path(name).suffix for name in written}
    (src / "notes.txt").write_text("not a photo")
    skips: list = []
    jobs = collect_jobs((src,), tmp_path / "out", skips)
    assert sorted(job.source.name for job in jobs) == sorted(written)
    # what the scan passed over by name is said
    assert [skip.reason for skip in skips] == ["1 file not named as an image (.txt); name a file directly to try it"]
    code, _, err = run_cli(capsys, *age_args(tiny_weights, src / written[0], "--to", "60", "-o", tmp_path / "o1"))
    assert code == 0, err


def test_a_second_batch_into_the_same_folder_keeps_the_first_batchs_rows(capsys, tmp_path, tiny_weights, utk_path):
    out = tmp_path / "out"
    for folder, names in (("A", ["a1.jpg", "a2.jpg"]), ("B", ["b1.jpg"])):
        (tmp_path / folder).mkdir()
        for name in names:
            shutil.copy(utk_path, tmp_path / folder / name)
        code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / folder, "--to", "60", "-o", out))
        assert code == 0, err
    assert summary_files(out / "summary.csv") == ["a1.jpg", "a2.jpg", "b1.jpg"]
    (out / "a2_age60.jpg").unlink()  # an output the user deleted: its row goes too
    code, _, err = run_cli(capsys, *age_args(tiny_weights, tmp_path / "B", "--to", "60", "-o", out))
    assert code == 0, err
    assert summary_files(out / "summary.csv") == ["a1.jpg", "b1.jpg"]
