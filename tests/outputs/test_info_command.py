"""`faceage info FILE...`: provenance shown as text or JSON, one-line errors per file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cli_helpers import run_cli
from faceage.imageio import save_image
from faceage.outputs.progression import save_gif
from faceage.outputs.provenance import provenance_metadata


@pytest.fixture
def outputs(tmp_path: Path) -> dict[str, Path]:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    meta = provenance_metadata(
        {"method": "ipcgan", "sha256": "ab" * 32}, [34.2], 60, created=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    files = {
        "aged.jpg": save_image(tmp_path / "aged.jpg", rgb, metadata=meta),
        "aged.png": save_image(tmp_path / "aged.png", rgb, metadata=meta),
        "aging.gif": save_gif(tmp_path / "aging.gif", [rgb, rgb[::-1]], metadata=meta),
        "plain.jpg": tmp_path / "plain.jpg",
        "notes.png": tmp_path / "notes.png",
        "hostile.png": tmp_path / "hostile.png",
    }
    Image.fromarray(rgb).save(files["plain.jpg"])
    text = PngInfo()  # a file made elsewhere whose text would drive the terminal
    text.add_text("faceage:note", "evil\x1b[31m\nline")
    Image.fromarray(rgb).save(files["hostile.png"], pnginfo=text)
    files["notes.png"].write_text("not an image")
    return files


def test_info_prints_provenance(capsys, outputs) -> None:
    names = ("aged.jpg", "plain.jpg", "aging.gif", "hostile.png")
    code, out, err = run_cli(capsys, "info", *(str(outputs[name]) for name in names))
    assert code == 0 and err == ""
    assert f"{outputs['aged.jpg']}: synthetic (AI-altered) image made by faceage" in out
    assert "method:" in out and "ipcgan" in out and "ab" * 32 in out
    assert "source age(s):" in out and "34.2" in out and "target age(s):" in out and "2025-01-02T03:04:05Z" in out
    assert f"{outputs['plain.jpg']}: no faceage provenance" in out
    assert out.count("synthetic (AI-altered) image") == 2  # the JPEG and the GIF
    assert f"{outputs['hostile.png']}: image made by faceage" in out  # a faceage key, but not our full record
    assert "\x1b" not in out and "faceage:note: evil\\x1b[31m\\nline" in out  # control characters escaped


def test_info_json(capsys, outputs) -> None:
    code, out, err = run_cli(
        capsys, "info", "--json", str(outputs["aged.png"]), str(outputs["plain.jpg"]), str(outputs["notes.png"])
    )
    assert code == 0
    payload = json.loads(out)
    first, second = payload["results"]
    assert first["file"] == str(outputs["aged.png"]) and first["provenance"]["faceage:method"] == "ipcgan"
    assert first["provenance"]["faceage:synthetic"] == "true" and first["provenance"]["faceage:target_age"] == "60"
    assert second["provenance"] == {}
    (failure,) = payload["failures"]
    assert failure["path"] == str(outputs["notes.png"]) and "not an image" in failure["reason"]
    assert "notes.png" in err and "1 of 3 inputs failed" in err


def test_info_errors_are_one_line_each(capsys, outputs, tmp_path) -> None:
    code, out, err = run_cli(capsys, "info", str(outputs["notes.png"]), str(tmp_path / "missing.png"))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0] == "error: notes.png: not an image, or a format that cannot be read"
    assert lines[1].startswith("error: missing.png: file not found")
    code, _, err = run_cli(capsys, "info")
    assert code == 2 and "Missing argument" in err


def huge_header_jpeg(path: Path, side: int) -> Path:
    """A few hundred bytes of JPEG whose frame header declares ``side`` x ``side`` pixels."""
    import io
    import struct

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 60)).save(buffer, "JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    start = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, start + 5, side, side)
    path.write_bytes(bytes(data))
    return path


def test_a_huge_declared_size_and_a_fifo_fail_alone(capsys, tmp_path, outputs):
    import os

    huge = huge_header_jpeg(tmp_path / "huge.jpg", 20000)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # no writer: opening it the usual way would block forever
    code, stdout, err = run_cli(capsys, "info", huge, fifo, outputs["aged.png"])
    assert code == 0
    assert "aged.png: synthetic (AI-altered) image" in stdout  # the valid file given after them
    assert "huge.jpg: the header declares a size far beyond any photo" in err
    assert "pipe.png: not a regular file" in err and "Traceback" not in err
