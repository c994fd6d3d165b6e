"""``data prepare`` end to end: shards, tables, manifest, rejects, overwrite/resume, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.cli import main as faceage_main
from faceage.data import datasets as ds
from faceage.data.prepare import prepare
from faceage.data.shards import ShardReader, read_manifest
from faceage.errors import FaceageError, NoFaceError

BLANK = "30_1_2_20990101000000001.jpg.chip.jpg"  # a valid name, but a flat grey image: no face
BROKEN = "31_0_3_20990101000000002.jpg.chip.jpg"  # a valid name, but not a JPEG


class FakePipeline:
    """Stands in for FacePipeline: resizes the photo; no face in a flat image. Fast and exact."""

    calls = 0
    interrupt_at: int | None = None

    def __init__(self, size: int = 128):
        self.size = size

    def align_one(self, rgb: np.ndarray, name: str = "image"):
        from faceage.faces.pipeline import AlignedFace

        FakePipeline.calls += 1
        if FakePipeline.interrupt_at is not None and FakePipeline.calls >= FakePipeline.interrupt_at:
            raise KeyboardInterrupt
        if rgb.std() < 1:
            raise NoFaceError(f"{name}: no face found")
        image = np.asarray(Image.fromarray(rgb).resize((self.size, self.size)))
        return AlignedFace(
            image, np.eye(2, 3), np.zeros(4, np.float32), np.zeros((5, 2), np.float32), None, 0.9, self.size
        )


@pytest.fixture()
def fake_pipeline(monkeypatch):
    FakePipeline.calls, FakePipeline.interrupt_at = 0, None
    monkeypatch.setattr("faceage.faces.pipeline.FacePipeline", FakePipeline, raising=False)
    return FakePipeline


@pytest.fixture()
def inputs(utk_dir: Path, aaf_dir: Path) -> tuple[Path, Path]:
    Image.new("RGB", (200, 200), (128, 128, 128)).save(utk_dir / BLANK)
    (utk_dir / BROKEN).write_bytes(b"this is not an image")
    return utk_dir, aaf_dir


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_prepare_end_to_end(inputs, fake_pipeline, tmp_path: Path) -> None:
    utk, aaf = inputs
    out = tmp_path / "out"
    report = prepare(utk, aaf, size=64, out_dir=out, workers=1, progress=False)
    assert report.written == 7  # 4 UTK + 3 AAF with a face
    assert report.rejects == {
        ds.NO_FACE: 1,
        ds.UNREADABLE: 1,
        ds.MALFORMED_NAME: 4,
        ds.AGE_OUT_OF_RANGE: 1,
        ds.MISSING_LABEL_ROW: 1,
        ds.MISSING_IMAGE: 1,
        ds.LABEL_CONFLICT: 2,
        ds.MALFORMED_LABEL: 1,
    }
    assert report.scanned == {"utkface": 10, "aaf": 9}
    assert "rejects: 12" in report.summary() and "no face: 1" in report.summary()

    manifest = read_manifest(out)
    assert manifest["counts"]["total"] == 7 and manifest["size"] == 64
    assert manifest["rejects"]["by_source"]["utkface"][ds.NO_FACE] == 1
    assert manifest["bytes_total"] == sum(p.stat().st_size for p in out.glob("faces-*.tar"))
    assert manifest["code_version"]["faceage"]
    labels = _rows(out / "labels.csv")
    assert len(labels) == 7 and {r["source"] for r in labels} == {"utkface", "aaf"}
    rejects = _rows(out / "rejects.csv")
    assert {Path(r["path"]).name: r["reason"] for r in rejects}[BROKEN] == ds.UNREADABLE
    assert not list(out.glob("*.tmp")) and not (out / "progress.jsonl").exists()

    samples = list(ShardReader(out, verify=True))
    assert len(samples) == 7
    by_key = {r["key"]: r for r in labels}
    for key, rgb, lab in samples:
        assert rgb.shape == (64, 64, 3)
        assert lab["split"] == by_key[key]["split"] and str(lab["age"]) == by_key[key]["age"]
        assert lab["gender"] in (0, 1) and lab["score"] == 0.9 and 0.0 <= lab["coverage"] <= 1.0
    girl = next(lab for _, _, lab in samples if lab["file"] == "00000A02.jpg")
    assert (girl["age"], girl["gender"], girl["ethnicity"], girl["ethnicity_assumed"]) == (2, 1, "asian", True)


def test_output_folder_is_protected_and_overwrite_is_deterministic(inputs, fake_pipeline, tmp_path: Path) -> None:
    utk, aaf = inputs
    out = tmp_path / "out"
    first = prepare(utk, aaf, size=64, out_dir=out, workers=1, progress=False)
    with pytest.raises(FaceageError, match="not empty"):
        prepare(utk, aaf, size=64, out_dir=out, workers=1, progress=False)
    again = prepare(utk, aaf, size=64, out_dir=out, workers=1, progress=False, overwrite=True)
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in first.shards]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FaceageError, match="did not write"):
        prepare(utk, aaf, size=64, out_dir=out, workers=1, progress=False, overwrite=True)
    assert (out / "manifest.json").is_file()  # nothing deleted


def test_interrupt_then_resume(inputs, fake_pipeline, tmp_path: Path) -> None:
    utk, aaf = inputs
    out = tmp_path / "out"
    small = 40_960  # 2-3 faces of 128 px per shard, so some shards finish before the interrupt
    fake_pipeline.interrupt_at = 6
    with pytest.raises(KeyboardInterrupt):
        prepare(utk, aaf, size=128, out_dir=out, workers=1, progress=False, max_shard_bytes=small)
    assert not list(out.glob("*.tmp")) and not (out / "manifest.json").exists()
    assert list(out.glob("faces-*.tar"))
    with pytest.raises(FaceageError, match="other settings"):
        prepare(utk, aaf, size=96, out_dir=out, workers=1, progress=False, resume=True, max_shard_bytes=small)
    fake_pipeline.interrupt_at, fake_pipeline.calls = None, 0
    report = prepare(utk, aaf, size=128, out_dir=out, workers=1, progress=False, resume=True, max_shard_bytes=small)
    assert 0 < report.resumed < 9 and fake_pipeline.calls < 9
    keys = [k for k, _, _ in ShardReader(out, verify=True)]
    assert len(keys) == len(set(keys)) == 7
    assert len(_rows(out / "labels.csv")) == 7
    assert sum(report.rejects.values()) == 12
    # resuming a finished folder does nothing and reports it
    assert (
        prepare(utk, aaf, size=128, out_dir=out, workers=1, progress=False, resume=True, max_shard_bytes=small).written
        == 7
    )


def test_limit_takes_a_sample(inputs, fake_pipeline, tmp_path: Path) -> None:
    utk, aaf = inputs
    report = prepare(utk, aaf, size=64, out_dir=tmp_path / "out", workers=1, progress=False, limit=3)
    assert report.written + report.rejects.get(ds.NO_FACE, 0) + report.rejects.get(ds.UNREADABLE, 0) == 3


def test_cli_missing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        faceage_main(
            [
                "data",
                "prepare",
                "--utkface",
                str(tmp_path / "nope"),
                "--aaf",
                str(tmp_path / "nope2"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: UTKFace folder not found") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cli_prepare_prints_counts(inputs, fake_pipeline, tmp_path: Path, capsys) -> None:
    utk, aaf = inputs
    faceage_main(
        [
            "data",
            "prepare",
            "--utkface",
            str(utk),
            "--aaf",
            str(aaf),
            "--size",
            "64",
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert "prepared 7 faces" in out and "no face: 1" in out and "MiB" in out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["total"] == 7


@pytest.mark.slow
def test_prepare_real_pipeline_in_worker_processes(real_six: tuple[Path, Path], tmp_path: Path) -> None:
    """Six real photos through the real FacePipeline in 2 spawned workers."""
    utk, aaf = real_six
    report = prepare(utk, aaf, size=128, out_dir=tmp_path / "out", workers=2, progress=False)
    assert report.written == 6 and report.rejects == {}
    samples = list(ShardReader(tmp_path / "out", verify=True))
    assert len(samples) == 6
    for _, rgb, labels in samples:
        assert rgb.shape == (128, 128, 3) and rgb.std() > 20  # a real picture, not padding
        assert labels["score"] > 0.5
        # UTKFace's tight 200-px crops fill only part of the FFHQ square; AAF's loose crops most of it
        assert (0.2 if labels["source"] == "utkface" else 0.7) < labels["coverage"] <= 1.0


def test_processing_order_is_a_sample_across_splits(shared_datasets: Path) -> None:
    """--limit takes a hash-ordered sample whose split shares follow the full split."""
    from collections import Counter

    from faceage.data.prepare import processing_order
    from faceage.data.split import assign_splits

    records = ds.scan_utkface(shared_datasets / "utkface" / "images")[0] + ds.scan_aaf(shared_datasets / "aaf")[0]
    assignment = assign_splits(records)
    sample = processing_order(records, limit=2000)
    assert processing_order(list(reversed(records)), limit=2000) == sample
    shares = Counter(assignment[r.key] for r in sample)
    assert 0.03 < shares["test"] / 2000 < 0.10 and shares["val"] > 0 and shares["train"] > 1500
    assert 0.2 < sum(r.source == "aaf" for r in sample) / 2000 < 0.5
