"""Shared pieces of the shipped-weights tests: the checked weights, the example photo in gray, and a
trainer that resumes from the shipped weights alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceage.assets import EXAMPLE_PHOTO, verify_shipped
from faceage.imageio import load_image
from faceage.models.io import read_flat_config


def verify_shipped_pair(stem: str) -> None:
    """The shipped ``stem``.safetensors and its .json, their sha256 checked against the manifest."""
    verify_shipped(f"{stem}.safetensors")
    verify_shipped(f"{stem}.json")


def gray_example() -> np.ndarray:
    """The embedded example photo as a three-channel grayscale image."""
    photo = load_image(EXAMPLE_PHOTO)
    return np.repeat(photo.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)


def channel_spread(image: np.ndarray) -> np.ndarray:
    """(H, W) largest minus smallest channel per pixel (0 everywhere on a gray image)."""
    return image.astype(int).max(axis=2) - image.astype(int).min(axis=2)


def one_step_from_shipped(
    weights: str, kind: str, options: Callable[..., object], train: Callable[..., dict], out: Path, **settings
) -> None:
    """Train one step from the shipped ``weights`` (network ``kind``): the new weights record where they
    started and count on from the shipped total."""
    shipped = verify_shipped(weights)
    _, before = read_flat_config(shipped, kind)
    opts = options(out=str(out), steps=1, threads=1, log_every=1, init_from=str(shipped), **settings)
    assert train(opts, log=lambda _: None)["step"] == 1
    _, after = read_flat_config(out / weights, kind)
    assert after["initialised_from"]["steps"] == before["steps"]
    assert after["total_steps"] == before.get("total_steps", before["steps"]) + 1
