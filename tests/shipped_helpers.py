"""Shared check of the shipped trained networks: their trainer resumes from the shipped weights alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from faceage.assets import verify_shipped
from faceage.models.io import read_flat_config


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
