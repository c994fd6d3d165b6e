"""The `faceage` command: real models on real photos, one-line errors, per-file reports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from cli_helpers import run_cli
from faceage.assets import EXAMPLE_PHOTO


def test_estimate_gives_a_plausible_age_for_the_example(capsys):
    code, out, err = run_cli(capsys, "estimate", "--json", str(EXAMPLE_PHOTO))
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    (face,) = result["faces"]
    # Eileen Collins was about 42 in this NASA portrait
    assert 28 <= face["age"] <= 55
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= result["width"] and 0 <= y0 < y1 <= result["height"]


def test_missing_file_is_one_line_and_fails(capsys, tmp_path):
    code, out, err = run_cli(capsys, "estimate", str(tmp_path / "nope.jpg"))
    assert code == 1
    assert err.strip().count("\n") == 0 and "not found" in err and "Traceback" not in err


def test_some_bad_inputs_are_reported_but_the_rest_succeeds(capsys, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(blank)
    code, out, err = run_cli(capsys, "estimate", str(EXAMPLE_PHOTO), str(text), str(blank))
    assert code == 0
    assert "age" in out and "blank.png: no face found" in out
    assert "notes.jpg" in err and "1 of 3 inputs failed" in err


def test_masks_writes_aligned_face_and_overlay(capsys, tmp_path):
    code, out, err = run_cli(capsys, "masks", str(EXAMPLE_PHOTO), "-o", str(tmp_path / "out"), "--size", "128")
    assert code == 0, err
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["example_face0_aligned.png", "example_face0_masks.png"]
    for path in written:
        assert Image.open(path).size == (128, 128)


def test_masks_never_overwrites_an_input(capsys, tmp_path):
    # the first photo's output name is exactly the second input's name
    first, second = tmp_path / "a.png", tmp_path / "a_face0_aligned.png"
    Image.open(EXAMPLE_PHOTO).save(first)
    Image.open(EXAMPLE_PHOTO).save(second)
    before = second.read_bytes()
    code, _, err = run_cli(capsys, "masks", str(first), str(second), "-o", str(tmp_path))
    assert code == 0 and "refusing to overwrite" in err and "1 of 2 inputs failed" in err
    assert second.read_bytes() == before


def test_wrong_arguments_are_rejected(capsys):
    code, _, err = run_cli(capsys, "masks", str(EXAMPLE_PHOTO), "-o", "x", "--size", "100")
    assert code == 2 and "'100' is not one of" in err
    code, _, err = run_cli(capsys, "estimate")
    assert code == 2 and "Missing argument" in err


def test_installed_command_runs_without_traceback(tmp_path):
    """The console script itself: exit status and stderr as a user sees them."""
    done = subprocess.run(
        [sys.executable, "-m", "faceage.cli", "estimate", str(tmp_path / "missing.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_help_loads_no_numerical_or_model_library():
    """``faceage --help`` and option parsing stay instant: every command imports its heavy modules lazily."""
    code = (
        "import sys, faceage.cli; heavy = {'numpy', 'cv2', 'PIL', 'torch', 'onnxruntime', 'dlib'} & set(sys.modules); "
        "assert not heavy, sorted(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_corrupt_model_file_is_one_line_naming_it(capsys, tmp_path, monkeypatch):
    import shutil

    from faceage import assets

    fake = tmp_path / "weights"
    shutil.copytree(assets.WEIGHTS_DIR, fake)
    (fake / "face_detection_yunet_2023mar.onnx").write_bytes(b"truncated download")
    monkeypatch.setattr(assets, "WEIGHTS_DIR", fake)
    code, out, err = run_cli(capsys, "estimate", str(EXAMPLE_PHOTO))
    assert code == 1 and "Traceback" not in err and err.strip().count("\n") == 0
    assert "face_detection_yunet_2023mar.onnx" in err and "corrupt" in err and "reinstall faceage" in err


def test_a_missing_runtime_is_one_line_naming_the_package():
    # dlib unimportable, as after a partial install: the command names it and how to reinstall
    code = (
        "import sys; sys.modules['dlib'] = None\n"
        "from faceage.cli import main\n"
        f"main(['estimate', {str(EXAMPLE_PHOTO)!r}])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().count("\n") == 0
    assert "'dlib' (dlib-bin) is missing or broken" in run.stderr and "reinstall faceage" in run.stderr


def test_python_dash_m_and_version_give_the_one_version():
    import tomllib
    from pathlib import Path

    from faceage import __version__

    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"] == __version__
    major_minor = ".".join(__version__.split(".")[:2])
    assert f"(v{major_minor})" in (root / "README.md").read_text()
    run = subprocess.run([sys.executable, "-m", "faceage", "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"faceage, version {__version__}"
