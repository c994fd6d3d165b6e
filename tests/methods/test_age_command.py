"""`faceage age`: files and folders, the tiny generator injected with --weights (a real weights file)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from faceage.assets import EXAMPLE_PHOTO
from faceage.imageio import load_image, read_metadata
from faceage.methods.commands import SUMMARY_FIELDS


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_one_photo_to_one_age(capsys, tmp_path, tiny_weights):
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "age", EXAMPLE_PHOTO, "--to", "60", "-o", out, "--method", "ipcgan", "--weights", tiny_weights
    )
    assert code == 0, err
    assert files_under(out) == ["example_age60.jpg"]  # nothing else: no temp files left behind
    written = load_image(out / "example_age60.jpg")
    assert written.shape == load_image(EXAMPLE_PHOTO).shape
    assert "face 0: age" in stdout and "target 60: reached" in stdout and "identity" in stdout
    meta = read_metadata(out / "example_age60.jpg")
    assert meta["faceage:synthetic"] == "true" and meta["faceage:method"] == "ipcgan"
    assert meta["faceage:target_age"] == "60"


def test_several_ages_as_json_with_progressions_of_the_face(capsys, tmp_path, tiny_weights):
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys,
        "age",
        EXAMPLE_PHOTO,
        "--to",
        "20,60,95",
        "-o",
        out,
        "--method",
        "ipcgan",
        "--weights",
        tiny_weights,
        "--json",
        "--strip",
        "--gif",
        "--crop",
        "--no-eval",
    )
    assert code == 0, err
    doc = json.loads(stdout)
    (result,) = doc["results"]
    assert [a["requested_age"] for a in result["ages"]] == [20, 60, 95]
    assert result["ages"][2]["target_age"] == 78 and "78" in result["ages"][2]["warning"]
    assert result["ages"][0]["faces"][0]["reached_age"] is None  # --no-eval
    assert files_under(out) == [
        "example_age20.jpg",
        "example_age60.jpg",
        "example_age95.jpg",
        "example_face0_progression.gif",
        "example_face0_strip.jpg",
    ]
    assert sorted(map(Path, result["outputs"])) == sorted(out.iterdir())
    with Image.open(out / "example_face0_progression.gif") as gif:
        assert gif.n_frames == 4
    assert read_metadata(out / "example_face0_strip.jpg")["faceage:target_age"] == "20, 60, 78"
    assert doc["summary"] is None and doc["failures"] == []


def test_an_output_never_replaces_an_input(capsys, tmp_path, tiny_weights):
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = load_image(EXAMPLE_PHOTO)
    Image.fromarray(rgb).save(folder / "x.png")
    Image.fromarray(rgb).save(folder / "x_age60.png")  # what x.png's output would be called
    before = (folder / "x_age60.png").read_bytes()
    code, _, err = run_cli(
        capsys,
        "age",
        folder / "x.png",
        folder / "x_age60.png",
        "--to",
        "60",
        "--no-eval",
        "--method",
        "ipcgan",
        "--weights",
        tiny_weights,
    )
    assert code == 0  # one of two inputs done
    assert "refusing to overwrite an input" in err and "1 of 2 inputs failed" in err
    assert (folder / "x_age60.png").read_bytes() == before
    assert files_under(folder) == ["x.png", "x_age60.png", "x_age60_age60.png"]  # written beside its input


def test_a_folder_batch_keeps_going_writes_a_summary_and_resumes(capsys, tmp_path, tiny_weights, utk_path):
    src, out = tmp_path / "photos", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLE_PHOTO, src / "a.jpg")
    shutil.copy(utk_path, src / "sub" / "utk.jpg")
    data = EXAMPLE_PHOTO.read_bytes()
    (src / "broken.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("not a photo, not picked up")
    args = ("age", src, "--to", "30,60", "-o", out, "--method", "ipcgan", "--weights", tiny_weights, "--json")

    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "broken.jpg" in err and "truncated" in err and "1 of 3 inputs failed" in err
    doc = json.loads(stdout)
    assert [r["file"] for r in doc["results"]] == [str(src / "a.jpg"), str(src / "sub" / "utk.jpg")]
    assert [f["path"] for f in doc["failures"]] == [str(src / "broken.jpg")]
    assert files_under(out) == [
        ".faceage-batch.jsonl",
        "a_age30.jpg",
        "a_age60.jpg",
        "sub/utk_age30.jpg",
        "sub/utk_age60.jpg",
        "summary.csv",
    ]
    with open(out / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SUMMARY_FIELDS
        rows = list(reader)
    assert [(r["file"], r["target_age"]) for r in rows] == [
        (str(src / "a.jpg"), "30.0"),
        (str(src / "a.jpg"), "60.0"),
        (str(src / "sub" / "utk.jpg"), "30.0"),
        (str(src / "sub" / "utk.jpg"), "60.0"),
    ]
    for row in rows:
        assert row["face"] == "0" and row["same_person"] in ("True", "False")
        assert 0 <= float(row["source_age"]) <= 81 and 0 <= float(row["reached_age"]) <= 81
        assert -1 <= float(row["identity"]) <= 1 and float(row["ms"]) > 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}

    code, stdout, err = run_cli(capsys, *args)  # resume: nothing left to do but the broken file
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["results"] == [] and doc["skipped"] == [str(src / "a.jpg"), str(src / "sub" / "utk.jpg")]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps
    with open(out / "summary.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows  # the skipped files' rows are kept

    code, stdout, err = run_cli(capsys, *args, "--overwrite", "--no-eval")
    assert code == 0, err
    assert len(json.loads(stdout)["results"]) == 2


def test_every_input_failing_exits_1(capsys, tmp_path, tiny_weights):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(blank)
    code, stdout, err = run_cli(
        capsys, "age", blank, "--to", "60", "--method", "ipcgan", "--weights", tiny_weights, "--no-eval"
    )
    assert code == 1
    assert err.count("\n") == 1 and err.strip().endswith("blank.png: no face found in the photo")
    assert files_under(tmp_path) == ["blank.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "abc"), "'abc' is not a number"),
        (("--to", "-5"), "between 0 and 120"),
        (("--to", "30,,60"), "empty entry"),
        (("--to", "30,30"), "each age once"),
        (("--to", "60", "--crop"), "--crop applies"),
        (("--to", "60", "--method", "nope"), "nope"),
    ],
)
def test_bad_options_are_usage_errors(capsys, args, message):
    code, _, err = run_cli(capsys, "age", EXAMPLE_PHOTO, *args)
    assert code == 2 and message in err


def test_help_labels_the_experimental_method_and_names_the_default(capsys):
    code, stdout, _ = run_cli(capsys, "age", "--help")
    text = " ".join(stdout.split())  # click wraps the help
    assert code == 0 and "default prototype" in text and "[experimental]" in text


def test_a_folder_needs_an_output_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "age", tmp_path, "--to", "60")
    assert code == 2 and "-o OUT" in err


def test_missing_shipped_weights_is_one_line(capsys, shipped_dir, tmp_path):
    code, _, err = run_cli(capsys, "age", EXAMPLE_PHOTO, "--to", "60", "-o", tmp_path)
    assert code == 1 and err.count("\n") == 1 and "no weights installed" in err


def test_demo_says_so_when_no_aging_weights_are_installed(capsys, shipped_dir, tmp_path):
    code, stdout, err = run_cli(capsys, "demo", "-o", tmp_path / "demo")
    assert code == 0, err
    assert "no aging weights are installed" in stdout


def test_demo_ages_the_example_when_weights_are_installed(capsys, installed, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "-o", out)
    assert code == 0, err
    aged = [f"example_age{a}.jpg" for a in (10, 30, 50, 70)]
    assert set(aged) | {"example_strip.jpg"} <= set(files_under(out))
    assert stdout.count("reached") == 4


def test_folder_scan_is_recursive_sorted_and_leaves_out_hidden_files_and_its_own_outputs(tmp_path):
    from faceage.methods.commands import collect_jobs

    src = tmp_path / "photos"
    for name in ("b.JPG", "a.png", "sub/c.webp", "notes.txt", ".hidden.jpg", ".x.jpg.abc.tmp", "out/a_age60.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"")
    jobs = collect_jobs((src, src / "a.png"), src / "out")
    assert [
        (j.source.relative_to(src).as_posix(), j.out_dir.relative_to(src).as_posix(), j.from_folder) for j in jobs
    ] == [("a.png", "out", True), ("b.JPG", "out", True), ("sub/c.webp", "out/sub", True)]
    assert [j.age_path(60).name for j in jobs] == ["a_age60.png", "b_age60.jpg", "c_age60.png"]
    assert [j.age_path(42.5).name for j in jobs][:1] == ["a_age42.5.png"]
    (single,) = collect_jobs((src / "sub" / "c.webp",), None)
    assert single.out_dir == src / "sub" and not single.from_folder


def test_the_known_age_at_the_photo_and_method_options(capsys, tmp_path, tiny_weights):
    """--from: the method starts from the given age, the report keeps the estimate beside it;
    --set: a method option reaches the loader (as `faceage bench aging --set`)."""
    out = tmp_path / "out"
    args = ("age", EXAMPLE_PHOTO, "--to", "60", "-o", out, "--method", "ipcgan", "--weights", tiny_weights)
    code, stdout, err = run_cli(capsys, *args, "--from", "8", "--set", "batch=2", "--json")
    assert code == 0, err
    (face,) = json.loads(stdout)["results"][0]["ages"][0]["faces"]
    assert face["given_age"] == 8 and face["source_age"] == 8 and face["source_from"] == "given"
    assert face["estimated_age"] > 15  # the example is an adult: the estimate is kept, not used
    assert read_metadata(out / "example_age60.jpg")["faceage:source_ages"] == "8"
    assert read_metadata(out / "example_age60.jpg")["faceage:source_ages_from"] == "given"
    code, stdout, _ = run_cli(capsys, *args, "--from", "8", "--overwrite")
    assert code == 0 and "age 8 (given; estimate" in stdout
    code, _, err = run_cli(capsys, *args, "--set", "batch=0")
    assert code == 1 and "option 'batch'" in err and "must be >= 1" in err
    code, _, err = run_cli(capsys, *args, "--set", "truncation=0.7")
    assert code == 1 and "has no option 'truncation' (its options: batch)" in err
    code, _, err = run_cli(capsys, *args, "--set", "batch")
    assert code == 2 and "expected KEY=VALUE" in err
    code, _, err = run_cli(capsys, *args, "--from", "old")
    assert code == 2 and "'old' is not a number" in err
    code, _, err = run_cli(capsys, *args, "--from", "8,30")  # two ages, one face
    assert code == 1 and "2 ages at the photo given, but 1 face(s)" in err


def test_estimate_and_age_report_one_age_for_one_face(capsys, tmp_path, tiny_weights):
    """The same measurement on the same crop: `faceage estimate` and `faceage age` agree (they read
    36.7 and 28.5 on the example when estimate measured the detector's box)."""
    code, stdout, _ = run_cli(capsys, "estimate", EXAMPLE_PHOTO, "--json")
    estimated = json.loads(stdout)["results"][0]["faces"][0]["age"]
    args = ("age", EXAMPLE_PHOTO, "--to", "60", "-o", tmp_path, "--method", "ipcgan", "--weights", tiny_weights)
    code, stdout, err = run_cli(capsys, *args, "--json", "--no-eval")
    assert code == 0, err
    (face,) = json.loads(stdout)["results"][0]["ages"][0]["faces"]
    assert face["source_age"] == face["estimated_age"] == estimated  # ipcgan ages 128 px crops; measured at 256
