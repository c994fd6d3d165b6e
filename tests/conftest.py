"""Shared test fixtures: real photos, from scikit-image and from ../shared/datasets beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The research datasets folder that CI places beside the checkout."""
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"expected the shared datasets beside the checkout at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A public-domain 512x512 RGB portrait (Eileen Collins) shipped with scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
