"""The picture grid of a method's results: one face per row, the input then each target age.

Looked at by a person before a method is called working (numbers alone can be fooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faceage.eval.guards import _check
from faceage.methods.base import AgingMethod, run_edit

GRID_TARGETS = (5.0, 15.0, 25.0, 35.0, 55.0, 75.0)
GRID_FACES = 16  # at most: the datasets' licences allow showing a few faces, not redistributing them
GRID_TILE = 128


def render_grid(
    method: AgingMethod,
    faces: np.ndarray,
    source_ages: np.ndarray,
    targets: Sequence[float] = GRID_TARGETS,
    tile: int = GRID_TILE,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """(rows, cols) picture: one face per row, the input then each target age, with a label strip."""
    faces = _check(faces)[:GRID_FACES]
    source_ages = np.asarray(source_ages, np.float64)[: len(faces)]
    lo, hi = method.supported_ages()
    columns = [faces]
    for t in targets:
        points = None if landmarks is None else landmarks[: len(faces)]
        columns.append(run_edit(method, faces, source_ages, float(min(max(t, lo), hi)), points).edited)
    return labelled_columns(["input", *(f"{t:g}" for t in targets)], columns, tile)


def labelled_columns(
    labels: Sequence[str], columns: Sequence[np.ndarray], tile: int = GRID_TILE, font_scale: float = 0.5
) -> np.ndarray:
    """Columns of square RGB images (each (rows, S, S, 3)) side by side as ``tile`` px tiles, each
    column's label in a white strip above it."""
    header = 20
    rows = len(columns[0])
    canvas = np.full((header + tile * rows, tile * len(columns), 3), 255, np.uint8)
    for c, (label, images) in enumerate(zip(labels, columns)):
        cv2.putText(canvas, label, (c * tile + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
        for r, image in enumerate(images):
            interp = cv2.INTER_AREA if image.shape[0] > tile else cv2.INTER_CUBIC
            canvas[header + r * tile : header + (r + 1) * tile, c * tile : (c + 1) * tile] = (
                image if image.shape[0] == tile else cv2.resize(image, (tile, tile), interpolation=interp)
            )
    return canvas


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB picture as PNG, atomically."""
    from faceage.atomic import atomic_write

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("could not encode the grid as PNG")
    path = Path(path)
    atomic_write(path, lambda f: f.write(data.tobytes()))
    return path
