"""``faceage.batch``: age folders, lists and files of photos from Python, on this machine or a Ray
cluster, with the guarantees of ``faceage age`` (the same outputs, batch record, resume, summary).

    import faceage.batch
    report = faceage.batch.age(["photos/"], to=[30, 70], out="aged/")               # this process
    report = faceage.batch.age(["photos.csv"], to=70, out="/shared/aged", engine="ray",
                               address="auto", workers=16)                          # a Ray cluster
    print(len(report.results), "done,", len(report.failures), "failed; summary:", report.summary)

It runs the same code as the command (``faceage.methods.commands.run_batch``), quietly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from faceage.methods.commands import BatchInputError, BatchReport, run_batch

__all__ = ["BatchInputError", "BatchReport", "age"]


def age(
    sources: Iterable[str | Path],
    to: float | Iterable[float],
    out: str | Path | None = None,
    *,
    method: str | None = None,
    options: dict[str, object] | None = None,
    source_age: float | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    weights: str | Path | None = None,
    device: str = "cpu",
    max_faces: int | None = None,
    evaluate: bool = True,
    overwrite: bool = False,
    strip: bool = False,
    gif: bool = False,
    mp4: bool = False,
    crop: bool = False,
    progress: bool = False,
) -> BatchReport:
    """Age every photo in ``sources`` (files, folders, list files) to each age in ``to``; outputs,
    ``summary.csv`` and the resume record go to ``out``. ``engine`` "ray" runs the aging on an actor
    pool of the Ray cluster at ``address`` (default ``RAY_ADDRESS``, else a Ray started here).
    ``options`` are the method's (``--set KEY=VALUE``: ``{"strength": 1.5}``); ``source_age`` the age
    at the photos when known (``--from``).

    Per-file failures are in the report, never raised; ``BatchInputError`` (a ``FaceageError``)
    for inputs and options that do not fit together, and ``FaceageError`` when Ray is missing or
    the cluster cannot be reached.
    """
    from faceage.age_groups import check_target_age, plain_age
    from faceage.methods.registry import DEFAULT_METHOD

    if engine not in ("local", "ray"):
        raise BatchInputError(f"engine must be 'local' or 'ray', got {engine!r}")
    ages = (to,) if isinstance(to, int | float) else tuple(to)
    try:
        checked = tuple(plain_age(check_target_age(float(age))) for age in ages)  # as `--to` reads them
    except ValueError as error:
        raise BatchInputError(f"target age: {error}") from None
    if len(set(checked)) != len(checked) or not checked:
        raise BatchInputError(f"each target age once (to one decimal), at least one, got {list(ages)}")
    return run_batch(
        tuple(Path(source) for source in sources),
        checked,
        None if out is None else Path(out),
        method=DEFAULT_METHOD if method is None else method,
        sets=dict(options or {}),
        source_age=source_age,
        weights=None if weights is None else Path(weights),
        device=device,
        max_faces=max_faces,
        evaluate=evaluate,
        strip=strip,
        gif=gif,
        mp4=mp4,
        crop=crop,
        overwrite=overwrite,
        engine=engine,
        address=address,
        workers=workers,
        progress=progress,
    )
