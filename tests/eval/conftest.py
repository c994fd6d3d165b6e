"""Fixtures for the evaluator tests: real UTKFace / AAF photos picked by a fixed rule, and FFHQ-style
aligned crops made by faceage's own detector and alignment."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.faces.align import alignment_matrix, warp_face
from faceage.faces.detect import FaceDetector


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


@pytest.fixture(scope="session")
def utkface(shared_datasets: Path):
    """``pick(age, k)``: the first k UTKFace files (sorted by name) labelled ``age``, as (rgb, age)."""
    folder = shared_datasets / "utkface" / "images"
    names = sorted(p.name for p in folder.iterdir())

    def pick(age: int, k: int = 1) -> list[tuple[np.ndarray, int]]:
        chosen = [n for n in names if n.split("_")[0] == str(age)][:k]
        assert len(chosen) == k, f"UTKFace has fewer than {k} photos labelled {age}"
        return [(load_rgb(folder / n), age) for n in chosen]

    return pick


@pytest.fixture(scope="session")
def aaf(shared_datasets: Path):
    """``pick(age, k)``: the first k AAF validation photos (authors' val_ split) labelled ``age``."""
    root = shared_datasets / "aaf"
    with open(root / "labels.csv", newline="") as f:
        ages = {row["file"]: int(row["age"]) for row in csv.DictReader(f)}
    val = sorted(line.split()[0] for line in (root / "splits" / "val_.txt").read_text().splitlines() if line.strip())

    def pick(age: int, k: int = 1) -> list[tuple[np.ndarray, int]]:
        chosen = [n for n in val if ages.get(n) == age][:k]
        assert len(chosen) == k, f"AAF val_ has fewer than {k} photos labelled {age}"
        return [(load_rgb(root / "images" / n), age) for n in chosen]

    return pick


@pytest.fixture(scope="session")
def yunet():
    """``detect(rgb) -> (boxes (N,4) x0,y0,x1,y1, points (N,5,2))`` with faceage's YuNet detector."""
    detector = FaceDetector()

    def detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = detector.detect(rgb)
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        points = np.array([f.points for f in faces], np.float32).reshape(-1, 5, 2)
        return boxes, points

    return detect


@pytest.fixture(scope="session")
def ffhq_align():
    """``align(rgb, points5, size=128)``: the pipeline's FFHQ-style crop from five points."""

    def align(rgb: np.ndarray, points5: np.ndarray, size: int = 128) -> np.ndarray:
        return warp_face(rgb, alignment_matrix(points5, size), size)

    return align
