"""`faceage age --engine ray` on a real two-node Ray cluster started here (`ray start --head` plus a
node joined with `ray start --address`), against `--engine local` on the same photos.

Outputs carry their creation time to the second (xmp:CreateDate) and the summary each face's
milliseconds, so "the same bytes" compares files with the timestamp blanked, and summaries without
the ms column. The cluster is small (1 CPU and 100 MB of object store per node): the machine has 2
cores shared with other jobs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faceage.batch
from faceage.methods.commands import RECORD_NAME, SUMMARY_NAME, read_list
from ray_cluster import ENV, Cluster, free_port, wait_for

PHOTOS = 100  # real faces, plus the bad files of BAD
BAD = ("truncated.jpg", "not_an_image.png", "empty.jpg")
KILLED = 24  # photos of the runs that lose a worker or the driver
STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def cluster():
    started = Cluster()
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, shared_datasets) -> Path:
    """PHOTOS small real face photos (UTKFace crops, 200x200) and the BAD files, in two subfolders."""
    folder = tmp_path_factory.mktemp("photos")
    images = shared_datasets / "utkface" / "images"
    names = sorted(p.name for p in images.glob("*.jpg"))[::97][:PHOTOS]
    for i, name in enumerate(names):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        shutil.copy(images / name, sub / f"p{i:03d}.jpg")
    (folder / "a" / BAD[0]).write_bytes((images / names[0]).read_bytes()[:300])
    (folder / "a" / BAD[1]).write_text("not an image")
    (folder / "b" / BAD[2]).write_bytes(b"")
    return folder


def _age_args(weights: Path) -> list[str]:
    return ["--to", "60", "--method", "ipcgan", "--weights", str(weights), "--no-eval"]


@dataclass(frozen=True)
class LocalRun:
    out: Path
    aged: list[str]  # the inputs it aged, in input order
    failed: list[str]  # the names of those that failed


@pytest.fixture(scope="module")
def local(photo_folder, tmp_path_factory, tiny_weights) -> LocalRun:
    """The local engine's outputs for the photo folder, through the Python API."""
    out = tmp_path_factory.mktemp("local") / "out"
    report = faceage.batch.age(
        [photo_folder], to=60, out=out, method="ipcgan", weights=tiny_weights, evaluate=False, engine="local"
    )
    failed = sorted(Path(f.path).name for f in report.failures)
    assert set(BAD) <= set(failed) and len(failed) <= len(BAD) + 3  # a few real photos may show no face
    assert len(report.results) + len(failed) == PHOTOS + len(BAD)
    return LocalRun(out, [result.file for result in report.results], failed)


def _faceage(*args, env: dict | None = None) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("faceage")), *map(str, args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or {**os.environ, **ENV}
    )


def _run(*args) -> tuple[int, str, str]:
    process = _faceage(*args)
    stdout, stderr = process.communicate(timeout=400)
    return process.returncode, stdout, stderr


def _normalised(path: Path) -> bytes:
    return STAMP.sub(b"TIMESTAMP", path.read_bytes())


def _files(out: Path) -> dict[str, bytes]:
    """Every output by relative path, its creation time blanked: not the summary, nor hidden files (the
    record, and the temp file of a write that a SIGKILL cut short, never under an output's name)."""
    return {
        str(p.relative_to(out)): _normalised(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != SUMMARY_NAME and not p.name.startswith(".")
    }


def _summary(out: Path) -> list[tuple]:
    with open(out / SUMMARY_NAME, newline="", encoding="utf-8") as handle:
        return [tuple(v for k, v in row.items() if k != "ms") for row in csv.DictReader(handle)]


def _record_lines(out: Path) -> list[str]:
    return [json.loads(line)["input"] for line in (out / RECORD_NAME).read_text().splitlines()]


@pytest.mark.slow
def test_two_node_cluster_gives_the_local_engine_outputs(cluster, photo_folder, local, tmp_path, tiny_weights):
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        "age", photo_folder, "-o", out, *_age_args(tiny_weights), "--engine", "ray", "--address", cluster.address
    )
    assert code == 0, stderr
    assert f"{len(local.failed)} of {PHOTOS + len(BAD)} inputs failed" in stderr
    for name in local.failed:
        assert re.search(rf"^error: .*{re.escape(name)}", stderr, re.MULTILINE), stderr
    assert len(re.findall(r"^\S.* -> ", stdout, re.MULTILINE)) == len(local.aged)  # a line per photo
    ray_files, local_files = _files(out), _files(local.out)
    assert len(ray_files) == len(local.aged) and sorted(ray_files) == sorted(local_files)
    assert [name for name in ray_files if ray_files[name] != local_files[name]] == []  # same bytes
    assert _summary(out) == _summary(local.out)  # input order, the same faces and ages
    assert sorted(_record_lines(out)) == sorted(_record_lines(local.out))
    assert len(cluster.pids("raylet")) == 2  # both nodes still up: the run used the cluster, not a Ray of its own


def _list_of(photo_folder: Path, local: LocalRun, tmp_path: Path) -> Path:
    """A list file in the photo folder naming KILLED photos the local run aged, and one bad file
    (outputs mirror the paths relative to the list's folder, as they did for the folder)."""
    chosen = [Path(name) for name in local.aged[:KILLED]]
    listing = photo_folder / f"list-{tmp_path.name}.txt"
    listing.write_text("# photos\n" + "".join(f"{p.relative_to(photo_folder)}\n" for p in chosen) + "a/empty.jpg\n")
    assert read_list(listing) == chosen + [photo_folder / "a" / "empty.jpg"]
    return listing


def _done(out: Path) -> int:
    try:
        return len((out / RECORD_NAME).read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(cluster, photo_folder, local, tmp_path, tiny_weights):
    listing, out = _list_of(photo_folder, local, tmp_path), tmp_path / "out"
    args = ["age", listing, "-o", out, *_age_args(tiny_weights), "--engine", "ray", "--address", cluster.address]
    run = _faceage(*args, "--workers", "2")
    try:
        wait_for(lambda: _done(out) >= 5 or run.poll() is not None, 240, "the first photos")
        victims = cluster.pids("MapBatches(Aging)")
        assert victims, "no aging actor found to kill"
        os.kill(victims[0], signal.SIGKILL)
        done_at_kill = _done(out)
        stdout, stderr = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    assert done_at_kill < KILLED  # the kill landed mid-run
    inputs = _record_lines(out)
    assert len(inputs) == len(set(inputs)) == KILLED  # every photo recorded, none twice
    rows = _summary(out)
    assert len(rows) == len(set(rows)) == KILLED
    expected = _files(local.out)
    aged = _files(out)
    assert len(aged) == KILLED and all(aged[name] == expected[name] for name in aged)
    assert "error: " in stderr and "empty.jpg" in stderr  # the bad file listed, not fatal


@pytest.mark.slow
def test_a_killed_driver_resumes_on_the_same_command(cluster, photo_folder, local, tmp_path, tiny_weights):
    listing, out = _list_of(photo_folder, local, tmp_path), tmp_path / "out"
    args = ["age", listing, "-o", out, *_age_args(tiny_weights), "--engine", "ray", "--address", cluster.address]
    first = _faceage(*args)
    try:
        wait_for(lambda: _done(out) >= 5 or first.poll() is not None, 240, "the first photos")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = _done(out)
    assert 5 <= done_before < KILLED
    code, stdout, stderr = _run(*args)
    assert code == 0, stderr
    skipped = int(re.search(r"skipped (\d+) of \d+ files already done", stdout).group(1))
    assert skipped >= done_before
    listed = {str(path) for path in read_list(listing)}
    assert _summary(out) == [row for row in _summary(local.out) if row[0] in listed]  # complete, in list order
    aged, expected = _files(out), _files(local.out)
    assert len(aged) == KILLED and all(aged[name] == expected[name] for name in aged)


@pytest.mark.slow
def test_an_output_folder_a_node_cannot_write_is_refused_before_any_work(cluster, tmp_path, tiny_weights):
    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    (tmp_path / "file").write_text("a file where the output folder's parent should be")
    out = tmp_path / "file" / "out"
    code, stdout, stderr = _run(
        "age", photo, "-o", out, *_age_args(tiny_weights), "--engine", "ray", "--address", cluster.address
    )
    assert code == 1
    assert stderr.strip() == (
        f"error: Ray node 127.0.0.2 cannot write the output folder {out} (Not a directory): "
        "-o must be a folder every node can reach and write (a shared filesystem)"
    )


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_an_unreachable_address_is_one_line(tmp_path, tiny_weights):
    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    port = free_port()  # nothing listens there
    code, stdout, stderr = _run(
        "age",
        photo,
        "-o",
        tmp_path / "out",
        *_age_args(tiny_weights),
        "--engine",
        "ray",
        "--address",
        f"127.0.0.1:{port}",
    )
    assert code == 1
    assert stderr.strip() == (
        f"error: no Ray cluster at 127.0.0.1:{port} (Connection refused): start one with `ray start --head`, "
        "or leave out --address"
    )
    assert not (tmp_path / "out").exists()  # nothing written before the cluster was there


def test_without_ray_installed_says_how_to_install(tmp_path, tiny_weights):
    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    # Python's import system treats a None entry in sys.modules as "not installed"
    script = "import sys; sys.modules['ray'] = None; from faceage.cli import main; main(sys.argv[1:])"
    args = ["age", photo, "-o", tmp_path / "out", *_age_args(tiny_weights), "--engine", "ray"]
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: --engine ray needs Ray (with Ray Data), which is not installed: pip install 'faceage[ray]'"
    )


def test_a_name_with_any_bytes_crosses_ray_datas_arrow_rows(tmp_path):
    """A row reaches a worker through an Arrow table (UTF-8 strings only): names with undecodable
    bytes or control characters travel escaped and come back as the exact path."""
    import pyarrow

    from faceage.methods.commands import Job, _job_of, _Record, _row_of

    odd = os.fsdecode(b"caf\xe9\x01 \\x41")  # a Latin-1 byte, a control character, a literal backslash
    job = Job(tmp_path / odd / f"{odd}.jpg", tmp_path / "out" / odd, True, f"{odd}_jpg")
    with pytest.raises(UnicodeEncodeError):
        pyarrow.Table.from_pylist([{"source": str(job.source)}])  # why the rows are escaped
    (row,) = pyarrow.Table.from_pylist([_row_of(job, _Record(None))]).to_pylist()
    assert _job_of(row) == job
