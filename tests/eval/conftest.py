"""Fixtures for the evaluator tests: real UTKFace / AAF photos picked by a fixed rule, and FFHQ-style
aligned crops made with YuNet's five points (the way faceage's pipeline frames faces)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceage.assets import model_path


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
    """``detect(rgb) -> (boxes (N,4) x0,y0,x1,y1, points (N,5,2))`` with the bundled YuNet."""
    net = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), 0.7, 0.3, 50)

    def detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        net.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, faces = net.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        if faces is None:
            return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
        boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]], 1)
        return boxes.astype(np.float32), faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32)

    return detect


@pytest.fixture(scope="session")
def ffhq_align():
    """``align(rgb, points5, size=128)``: FFHQ-style crop from five points (faceage order)."""
    return _ffhq_align


def _ffhq_align(rgb: np.ndarray, points5: np.ndarray, size: int = 128) -> np.ndarray:
    p = np.asarray(points5, np.float64)
    eye_avg, mouth_avg = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    eye_to_eye, eye_to_mouth = p[1] - p[0], mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.float32([c - x - y, c - x + y, c + x + y])
    matrix = cv2.getAffineTransform(quad, np.float32([[0, 0], [0, size], [size, size]]))
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
