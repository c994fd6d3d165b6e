"""`faceage age` under faults: full and read-only disks, interrupts, changed or colliding inputs,
unrelated files at output names, odd things in scanned folders. Real files, real disks (a tiny tmpfs,
a kernel file-size limit), the tiny generator from conftest as the method (--method ipcgan --weights)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from faceage.cli import EXAMPLE_PHOTO
from faceage.imageio import load_image, read_metadata, save_image
from faceage.methods.commands import collect_jobs
from fault_helpers import SRC, run_limited, tiny_tmpfs

RECORD_NAME = ".faceage-batch.jsonl"  # the batch record (faceage.methods.commands.RECORD_NAME)


def summary_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as handle:
        return [(Path(row["file"]).name, row["target_age"]) for row in csv.DictReader(handle)]


def age_args(tiny_weights, *args) -> tuple:
    return ("age", *args, "--method", "ipcgan", "--weights", tiny_weights, "--no-eval")


@pytest.fixture
def face_rgb(utk_path) -> np.ndarray:
    return load_image(utk_path)


def test_colliding_names_get_distinct_outputs_and_resume_redoes_what_changed(capsys, tmp_path, tiny_weights, face_rgb):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(face_rgb).save(src / "same.bmp")
    Image.fromarray(face_rgb[:, ::-1].copy()).save(src / "same.tif")
    args = age_args(tiny_weights, src, "--to", "60", "-o", out, "--json")

    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["same_bmp_age60.png", "same_tif_age60.png"]
    assert read_metadata(out / "same_tif_age60.png")["faceage:source"] == "same.tif"

    code, stdout, err = run_cli(capsys, *args)  # nothing changed: both done
    assert json.loads(stdout)["skipped"] == [str(src / "same.bmp"), str(src / "same.tif")]

    Image.fromarray((face_rgb // 2 + 60).astype(np.uint8)).save(src / "same.tif")  # the input changed
    os.utime(src / "same.tif", ns=(1, 1))  # even with an older mtime than the output
    with open(out / "same_bmp_age60.png", "r+b") as handle:  # an output cut short (a full disk once)
        handle.truncate(1000)
    code, stdout, err = run_cli(capsys, *args)
    doc = json.loads(stdout)
    assert code == 0, err
    assert sorted(Path(r["file"]).name for r in doc["results"]) == ["same.bmp", "same.tif"]
    assert load_image(out / "same_bmp_age60.png").shape == face_rgb.shape
    assert summary_rows(out / "summary.csv") == [("same.bmp", "60.0"), ("same.tif", "60.0")]


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_an_unrelated_file_at_an_output_name_is_left_alone(capsys, tmp_path, tiny_weights, face_rgb):
    photo, out = tmp_path / "face.png", tmp_path / "out"
    Image.fromarray(face_rgb).save(photo)
    out.mkdir()
    mine = out / "face_age60.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(mine)  # the user's own file
    before = mine.read_bytes()
    for how in ([photo], [tmp_path]):  # single file, and folder
        code, _, err = run_cli(capsys, *age_args(tiny_weights, *how, "--to", "60", "-o", out))
        assert code == 1 and "face_age60.png already exists and faceage did not make it" in err, err
        assert mine.read_bytes() == before
    # faceage's own output of the same input is replaced by a rerun; --overwrite replaces anything
    mine.unlink()
    for extra in ((), (), ("--overwrite",)):
        code, _, err = run_cli(capsys, *age_args(tiny_weights, photo, "--to", "60", "-o", out, *extra))
        assert code == 0, err
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(mine)
    code, _, err = run_cli(capsys, *age_args(tiny_weights, photo, "--to", "60", "-o", out, "--overwrite"))
    assert code == 0 and read_metadata(mine)["faceage:source"] == "face.png"


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_a_write_error_fails_that_file_only(tmp_path, tiny_weights, utk_path):
    """Files may not grow past 60 kB (the kernel's limit): the example photo's output cannot be
    written, the small faces' outputs can. One line for the failed file, the batch goes on."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(utk_path, src / "a.jpg")
    shutil.copy(EXAMPLE_PHOTO, src / "b.jpg")
    shutil.copy(utk_path, src / "c.jpg")
    code = "import sys; from faceage.cli import main; main(sys.argv[1:])"
    done = run_limited(code, 60_000, *map(str, age_args(tiny_weights, src, "--to", "60", "-o", out)))
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {src / 'b.jpg'}: b_age60.jpg: cannot write the output (File too large)"], done.stderr
    assert "Traceback" not in done.stderr and "1 of 3 inputs failed" in done.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a_age60.jpg", "c_age60.jpg"]
    assert summary_rows(out / "summary.csv") == [("a.jpg", "60.0"), ("c.jpg", "60.0")]


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_summary(capsys, tmp_path, tiny_weights, utk_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(utk_path, src / "a.jpg")  # its output (~20 kB) fits
    shutil.copy(EXAMPLE_PHOTO, src / "b.jpg")  # its output does not
    shutil.copy(utk_path, src / "c.jpg")  # never tried: the disk is full
    with tiny_tmpfs(tmp_path / "disk", "64k") as out:
        code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))
        assert code == 1
        assert "Traceback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("error:")]
        assert "No space left on device" in line and "stopped with 2 of 3 files not done" in line
        assert summary_rows(out / "summary.csv") == [("a.jpg", "60.0")]
        assert sorted(p.name for p in out.iterdir()) == [RECORD_NAME, "a_age60.jpg", "summary.csv"]


def test_a_read_only_output_folder_stops_the_run_at_once(capsys, tmp_path, tiny_weights, utk_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(utk_path, src / name)
    if os.geteuid() != 0:  # a folder without write permission
        out = tmp_path / "locked"
        out.mkdir(mode=0o555)
        code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))
        out.chmod(0o755)
        reason = "Permission denied"
    else:  # root writes anywhere it has permission bits for: a read-only mount it cannot
        with tiny_tmpfs(tmp_path / "disk", "64k") as out:
            subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
            code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", out))
        reason = "Read-only file system"
    assert code == 1 and "Traceback" not in err
    assert reason in err and "stopped with 2 of 2 files not done" in err


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_summary_is_complete_after_a_kill_and_a_resume(capsys, tmp_path, tiny_weights, utk_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        shutil.copy(utk_path, src / name)
    command = [sys.executable, "-m", "faceage.cli", *map(str, age_args(tiny_weights, src, "--to", "30,60", "-o", out))]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not (out / RECORD_NAME).is_file():
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no chance to clean up: what is on disk must be enough
    finally:
        process.wait()
    first = summary_rows(out / "summary.csv")
    assert first and len(first) < 8 and first[:2] == [("a.jpg", "30.0"), ("a.jpg", "60.0")]
    code, _, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "30,60", "-o", out))  # resume
    assert code == 0, err
    assert summary_rows(out / "summary.csv") == [
        (n, a) for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg") for a in ("30.0", "60.0")
    ]


def test_a_folder_scan_says_what_it_passed_over(tmp_path, face_rgb):
    from faceage.outputs.provenance import provenance_metadata

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(face_rgb).save(src / "a.jpg")
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)
    (src / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    os.mkfifo(src / "pipe.jpg")
    meta = provenance_metadata({"method": "ipcgan"}, [30.0], 60, {"source": "a.jpg"})
    save_image(src / "a_age60.jpg", face_rgb, metadata=meta)  # an earlier run's output, -o was this folder
    skips = []
    jobs = collect_jobs((src,), tmp_path / "out", skips)
    assert [job.source.name for job in jobs] == ["a.jpg"]
    reasons = {Path(skip.path).name: skip.reason for skip in skips}
    assert reasons["a_age60.jpg"].startswith("made by faceage")
    assert reasons["gone.jpg"].startswith("broken symlink")
    assert reasons["pipe.jpg"].startswith("not a regular file")
    assert reasons["loop"].startswith("symlink loop")


def test_output_folder_equal_to_the_input_folder(capsys, tmp_path, tiny_weights, face_rgb):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(face_rgb).save(src / "a.png")
    for _ in range(2):
        code, stdout, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", src))
        assert code == 0, err
    assert sorted(p.name for p in src.iterdir()) == [RECORD_NAME, "a.png", "a_age60.png", "summary.csv"]
    assert "already done" in stdout
    (src / "a.png").unlink()
    code, _, err = run_cli(capsys, *age_args(tiny_weights, src, "--to", "60", "-o", src))
    assert code == 2 and "1 image(s) there are faceage outputs" in err


def test_a_video_is_redone_when_its_images_vouch_for_it(capsys, tmp_path, tiny_weights, face_rgb):
    """MP4 carries no provenance: a rerun replaces it because the images beside it name this input;
    an MP4 with no such images beside it is someone else's."""
    photo, out = tmp_path / "face.png", tmp_path / "out"
    Image.fromarray(face_rgb).save(photo)
    args = age_args(tiny_weights, photo, "--to", "30,60", "--mp4", "-o", out)
    for _ in range(2):
        code, _, err = run_cli(capsys, *args)
        assert code == 0, err
    other = tmp_path / "other"
    other.mkdir()
    (other / "face_progression.mp4").write_bytes(b"someone's video")
    code, _, err = run_cli(capsys, *age_args(tiny_weights, photo, "--to", "30,60", "--mp4", "-o", other))
    assert code == 1 and "face_progression.mp4 already exists" in err
    assert (other / "face_progression.mp4").read_bytes() == b"someone's video"


SCAN = """
import json, sys
from pathlib import Path
from faceage.methods.commands import collect_jobs
skips = []
jobs = collect_jobs((Path(sys.argv[1]),), Path(sys.argv[2]), skips)
print(json.dumps([[job.source.name for job in jobs], [[Path(s.path).name, s.reason] for s in skips]]))
"""


def test_an_unreadable_folder_is_listed_as_skipped(tmp_path, face_rgb):
    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    Image.fromarray(face_rgb).save(src / "a.jpg")
    command = [sys.executable, "-c", SCAN, str(src), str(tmp_path / "out")]
    if os.geteuid() == 0:  # root reads every folder: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder unreadable")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    (src / "locked").chmod(0)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)}
        )
    finally:
        (src / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    jobs, skips = json.loads(done.stdout)
    assert jobs == ["a.jpg"]
    assert skips == [["locked", "cannot list folder (Permission denied)"]]
