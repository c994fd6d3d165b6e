"""faceage.atomic: content lands, temp files never stay behind, failures leave the target alone."""

from __future__ import annotations

import json
import os

import pytest

from faceage.atomic import atomic_write, temp_target, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.bin"
    assert write_bytes_atomic(path, b"\x00\x01data") == path
    assert path.read_bytes() == b"\x00\x01data"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_text_and_json(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo\r\nworld\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\r\nworld\n".encode()
    write_json_atomic(tmp_path / "b.json", {"x": [1, 2]})
    assert (tmp_path / "b.json").read_text() == json.dumps({"x": [1, 2]}, indent=2) + "\n"
    write_json_atomic(tmp_path / "c.json", {"p": tmp_path}, indent=None, default=str)
    assert json.loads((tmp_path / "c.json").read_text()) == {"p": str(tmp_path)}


def test_replaces_existing_file_with_default_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failing_writer_leaves_target_untouched_and_no_temp(tmp_path, error):
    path = tmp_path / "keep.txt"
    path.write_text("original")

    def write(f):
        f.write(b"partial")
        raise error("boom")

    with pytest.raises(error, match="boom"):
        atomic_write(path, write)
    assert path.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failing_writer_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "new.txt", lambda f: (_ for _ in ()).throw(ValueError("no")))
    assert list(tmp_path.iterdir()) == []


def test_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    write_text_atomic(path, "deep")
    assert path.read_text() == "deep"


def test_temp_target_names_the_destination_of_a_leftover_temp(tmp_path):
    import tempfile

    # the name a temp file of atomic_write gets (content goes to memory first, so name one the same way)
    fd, name = tempfile.mkstemp(prefix=".manifest.json.", suffix=".tmp", dir=tmp_path)
    os.close(fd)
    assert temp_target(os.path.basename(name)) == "manifest.json"
    assert temp_target("manifest.json") is None
    assert temp_target("shard-000.tar.tmp") is None
    assert temp_target(".tmp") is None
