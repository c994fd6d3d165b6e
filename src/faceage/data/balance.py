"""Sampling faces by decade: the datasets are mostly 20-40-year-olds, and a trainer or a draw that
took faces as they come would rarely see a child or an old person."""

from __future__ import annotations

import numpy as np


def decade_index(ages: np.ndarray) -> np.ndarray:
    """Age in years -> decade 0..9 (9 = 90 and over)."""
    return np.clip(np.floor(np.asarray(ages, np.float64) / 10.0), 0, 9).astype(np.int64)


def balanced_weights(ages: np.ndarray, power: float) -> np.ndarray:
    """Sampling probability per face: ``1 / count(decade) ** power``, normalised to sum 1."""
    decades = decade_index(ages)
    counts = np.bincount(decades, minlength=10).astype(np.float64)
    w = 1.0 / counts[decades] ** power
    return w / w.sum()
