"""Small click helpers shared by the command modules: list options, context settings, and
running one job per input file with the failures listed at the end.

The command modules live beside the code they drive (``methods/commands.py``, ...); ``faceage.cli``
gathers them. They take their helpers from here, never from ``faceage.cli``, so the imports run
one way: ``cli`` -> each ``commands`` -> this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from faceage.errors import FaceageError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


def int_list(text: str) -> tuple[int, ...]:
    """'32,64,128' -> (32, 64, 128); a bad entry is a click usage error."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    """'0.25,0.5' -> (0.25, 0.5); a bad entry is a click usage error."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@dataclass
class FileFailure:
    path: str
    reason: str


def run_per_file(paths: Iterable[str], job: Callable[[str], Any]) -> tuple[list[Any], list[FileFailure]]:
    """Run ``job`` on each path, collecting results and per-file failures (FaceageError only)."""
    results, failures = [], []
    for path in paths:
        try:
            results.append(job(path))
        except FaceageError as error:
            failures.append(FileFailure(path, str(error)))
    return results, failures


def report_failures(failures: list[FileFailure], total: int) -> None:
    """Print each failed input on stderr; exit 1 when nothing succeeded."""
    for failure in failures:
        # most reasons already start with the file's name; don't print it twice
        named = Path(failure.path).name in failure.reason
        click.echo(f"error: {failure.reason}" if named else f"error: {failure.path}: {failure.reason}", err=True)
    if failures and len(failures) == total:
        raise SystemExit(1)
    if failures:
        click.echo(f"{len(failures)} of {total} inputs failed (listed above)", err=True)
