"""Small click helpers shared by the command modules: list options, context settings, and
running one job per input file with the failures listed at the end.

The command modules live beside the code they drive (``methods/commands.py``, ...); ``faceage.cli``
gathers them. They take their helpers from here, never from ``faceage.cli``, so the imports run
one way: ``cli`` -> each ``commands`` -> this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import click

from faceage.errors import FaceageError
from faceage.filenames import shown

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


def say(text: str, err: bool = False) -> None:
    """Print a line between progress-bar updates. Once stdout is closed (``faceage age ... | head -1``)
    it stays silent: the work, the files it writes and the summary must not depend on the terminal."""
    from tqdm import tqdm

    stream = sys.stderr if err else sys.stdout
    try:
        tqdm.write(text, file=stream)
        stream.flush()
    except BrokenPipeError:
        silence(stream)


def silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at the null device (a reader that went away), so later
    writes and the flush at exit succeed quietly instead of raising BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


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
    """Print each failed input on stderr (control characters and undecodable bytes of names escaped);
    exit 1 when nothing succeeded."""
    for failure in failures:
        # most reasons already start with the file's name; don't print it twice
        named = Path(failure.path).name in failure.reason
        line = f"error: {failure.reason}" if named else f"error: {failure.path}: {failure.reason}"
        click.echo(shown(line), err=True)
    if failures and len(failures) == total:
        raise SystemExit(1)
    if failures:
        click.echo(f"{len(failures)} of {total} inputs failed (listed above)", err=True)


# --- options every `faceage train` command shares (faceage.training.run does the work) -----------

DEVICES = ("auto", "cpu", "cuda")


def _alias_key(name: str) -> str:
    return f"faceage.alias.{name}"


def hidden_alias(old: str, name: str, type: Any = None) -> Callable[[Callable], Callable]:
    """An old spelling of option ``name``, accepted but not shown in --help. It is eager, so its value
    is stored before ``name`` is parsed; ``name``'s callback ``from_alias`` takes it when ``name``
    itself was not given."""

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta[_alias_key(name)] = value

    return click.option(old, type=type, default=None, hidden=True, expose_value=False, is_eager=True, callback=store)


def from_alias(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of an option with a ``hidden_alias``: its own value, else the alias's, else None."""
    return value if value is not None else ctx.meta.get(_alias_key(param.name or ""))


DATA_HELP = "Prepared folder of face shards (faceage data prepare --out)."


def data_option(help: str = DATA_HELP, must_exist: bool = True) -> Callable[[Callable], Callable]:
    """``--data DIR``: a prepared shard folder (every trainer and benchmark reads one)."""
    return click.option(
        "--data", type=click.Path(exists=must_exist, file_okay=False, path_type=Path), required=True, help=help
    )


def out_folder_option(help: str, default: Path | None = None) -> Callable[[Callable], Callable]:
    """``--out DIR``: the folder a trainer or exporter writes (required unless ``default``)."""
    return click.option(
        "--out", type=click.Path(file_okay=False, path_type=Path), required=default is None, default=default, help=help
    )


def device_option(default: str = "auto") -> Callable[[Callable], Callable]:
    return click.option(
        "--device",
        type=click.Choice(DEVICES),
        default=default,
        help="Where to train: auto = CUDA when there is a GPU, else CPU.",
    )


def max_minutes_option(f: Callable) -> Callable:
    """``--max-minutes`` (old spelling ``--minutes``, hidden)."""
    minutes = click.FloatRange(min=0, min_open=True)
    f = click.option(
        "--max-minutes",
        type=minutes,
        default=None,
        callback=from_alias,
        help="Stop cleanly, with a checkpoint, after this much wall time (continue with --resume).",
    )(f)
    return hidden_alias("--minutes", "max_minutes", type=minutes)(f)


def resume_option(
    help: str = "Continue the run in --out from its newest checkpoint.",
) -> Callable[[Callable], Callable]:
    """``--resume`` alone means ``auto`` (the newest checkpoint in --out, if any); ``--resume PATH``
    names where to resume from, for the trainers that can."""
    # no explicit default=None: with one, click 8.3 asks for a value after a bare --resume
    return click.option("--resume", is_flag=False, flag_value="auto", metavar="[auto|PATH]", help=help)


def _raise_interrupt(signum, frame) -> None:  # noqa: ANN001 - a signal handler's signature
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) stops a long command as cleanly as Ctrl-C: inside, it raises
    ``KeyboardInterrupt``, so finished shards stay and ``.tmp`` ones go."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def keep_checkpoint_on_interrupt(out: Path) -> Iterator[None]:
    """A trainer interrupted by Ctrl-C (after its own clean stop) ends with one line and exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"interrupted: the latest checkpoint in {out} is kept; continue with --resume", err=True)
        raise SystemExit(130) from None
