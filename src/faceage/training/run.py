"""What every trainer's run shares: its folder, options and metrics files, the device, resuming, and
stopping cleanly on a time limit or a signal.

A run folder holds ``options.json`` (the run's options), ``metrics.jsonl`` (one JSON line per
record, flushed as written, so a killed run keeps its history), checkpoints
(``faceage.training.checkpoint_format``) and what the trainer exports. Every ``faceage train`` command
takes ``--device auto|cpu|cuda``, ``--max-minutes`` and ``--resume`` (options in
``faceage.cli_options``) and hands them to the helpers here.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch

from faceage.atomic import write_json_atomic
from faceage.errors import FaceageError

OPTIONS_NAME = "options.json"
METRICS_NAME = "metrics.jsonl"


class TrainingError(FaceageError):
    """A training run cannot start or resume as asked (existing run, changed options)."""


class _Options(Protocol):
    def to_dict(self) -> dict: ...


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device; ``cuda``
    is this process's GPU under torchrun. ``DeviceError`` (one line) for a device this machine lacks."""
    from faceage.machine import check_device

    name = check_device(name)
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def append_jsonl(path: Path, record: dict) -> None:
    """One JSON line, flushed before returning."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


class MetricsLog:
    """``metrics.jsonl`` of a run: append-only JSON lines, floats rounded to 6 digits.

    ``enabled`` False (every rank but the first of a multi-GPU run) writes nothing.
    """

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            append_jsonl(self.path, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()})


def write_options(out: Path, options: dict) -> None:
    """``options.json`` of the run, written atomically."""
    write_json_atomic(Path(out) / OPTIONS_NAME, options, default=str)


def check_run_folder(opts: _Options, out: Path, resume: bool, resume_free: Collection[str] = ()) -> None:
    """Refuse to start over an existing run, or to resume one with other options (except
    ``resume_free`` keys, which do not change the result)."""
    from faceage.training.checkpoint_format import list_checkpoints

    saved = Path(out) / OPTIONS_NAME
    if resume:
        if not saved.is_file() or not list_checkpoints(out):
            raise TrainingError(f"nothing to resume in {out}: no {OPTIONS_NAME} or checkpoint")
        before = json.loads(saved.read_text(encoding="utf-8"))
        now = opts.to_dict()
        changed = sorted(k for k in now if k not in resume_free and before.get(k) != now[k])
        if changed:
            details = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
            raise TrainingError(f"cannot resume {out} with other options ({details})")
    elif saved.is_file() or list_checkpoints(out):
        raise TrainingError(f"{out} already holds a training run; pass --resume or choose another --out")


def resume_in_place(resume: str | None, out: Path) -> bool:
    """``--resume`` of a trainer that continues only the run in ``--out``: None -> False, ``auto`` or
    the run folder itself -> True; any other path is refused by name."""
    if resume is None:
        return False
    if resume == "auto" or Path(resume).resolve() == Path(out).resolve():
        return True
    raise TrainingError(f"--resume {resume}: this trainer continues the run in --out ({out}); pass --resume alone")


def prepare_resume(resume: str | None, out: Path) -> tuple[str, Path | None]:
    """('fresh'|'checkpoint'|'weights', path) from ``--resume`` (None, 'auto', index, run dir, model dir)."""
    from faceage.training.checkpoint_format import latest_checkpoint

    if resume is None:
        return "fresh", None
    if resume == "auto":
        found = latest_checkpoint(out)
        return ("checkpoint", found) if found is not None else ("fresh", None)
    p = Path(resume)
    if p.is_file() and p.suffix == ".json":
        return "checkpoint", p
    if p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return "weights", p
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise TrainingError(f"--resume {p}: no complete checkpoint in that folder")
        return "checkpoint", found
    raise TrainingError(f"--resume {p}: not a checkpoint index, run folder or model folder")


class StopFlag:
    """Turns SIGTERM, SIGINT and SIGUSR1 into a request to stop after the current step (with a
    checkpoint), and a time limit into the same; restores the previous handlers on exit.

    ``with StopFlag(max_minutes) as flag: ... if flag.reason(): break``
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self, max_minutes: float | None = None, started: float | None = None):
        self.max_minutes = max_minutes
        self.started = time.monotonic() if started is None else started
        self.signalled = ""
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signalled = f"signal {signum}"

    def install(self) -> StopFlag:
        """Catch the signals (main thread only; elsewhere only the time limit counts)."""
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):  # not in the main thread: no signal handling
                pass
        return self

    def restore(self) -> None:
        """Give the signals back to the handlers they had before ``install``."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> StopFlag:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def time_is_up(self) -> bool:
        return self.max_minutes is not None and time.monotonic() - self.started >= self.max_minutes * 60

    def reason(self) -> str:
        """Why to stop now ("" to go on): a signal, or the time limit."""
        if self.signalled:
            return self.signalled
        if self.time_is_up():
            return f"time limit {self.max_minutes:g} min"
        return ""


@dataclass
class StepLoop:
    """The loop the image-to-image trainers share (IPCGAN, refiner, student): step, log with the
    images per second, evaluate, checkpoint, and stop cleanly on ``steps``, the time limit, a
    signal or ``stop_after_steps`` (an interruption in tests), always with a checkpoint.

    ``step(k) -> dict`` runs optimisation step k (0-based) and returns numbers for the metrics
    log; ``line(k, parts, rate)`` is the console line; ``evaluate(k)`` and ``checkpoint(k)`` run
    after step k when due. ``seconds()`` is the run's wall time over all resumed calls.
    """

    steps: int
    batch: int
    metrics: Path
    log: Callable[[str], None]
    seconds: Callable[[], float]
    log_every: int
    eval_every: int
    checkpoint_every: int
    max_minutes: float | None = None
    started: float | None = None  # time.monotonic() the time limit counts from (None: the loop's start)
    stop_after_steps: int | None = None

    @classmethod
    def for_run(
        cls,
        opts,  # noqa: ANN001 - a trainer's options: steps, batch, out, log_every, checkpoint_every, max_minutes
        eval_every: int,
        log: Callable[[str], None],
        seconds: Callable[[], float],
        started: float | None,
        stop_after_steps: int | None,
    ) -> StepLoop:
        """The loop of a run folder ``opts.out`` with the trainer's own options."""
        return cls(
            opts.steps,
            opts.batch,
            Path(opts.out) / METRICS_NAME,
            log,
            seconds,
            opts.log_every,
            eval_every,
            opts.checkpoint_every,
            opts.max_minutes,
            started,
            stop_after_steps,
        )

    def run(
        self,
        start: int,
        step: Callable[[int], dict],
        line: Callable[[int, dict, float], str],
        evaluate: Callable[[int], None],
        checkpoint: Callable[[int], None],
    ) -> dict:
        """Run from step ``start``; return {finished, step, seconds}."""
        k, last = start, time.perf_counter()
        with StopFlag(self.max_minutes, self.started) as stop:
            while k < self.steps:
                parts = step(k)
                k += 1
                if k % self.log_every == 0:
                    now = time.perf_counter()
                    rate = self.log_every * self.batch / max(now - last, 1e-9)
                    last = now
                    append_jsonl(self.metrics, {"step": k, **parts, "images_per_s": rate, "seconds": self.seconds()})
                    self.log(line(k, parts, rate))
                over = bool(stop.reason()) or (self.stop_after_steps is not None and k >= self.stop_after_steps)
                if k % self.eval_every == 0 or k == self.steps or over:
                    evaluate(k)
                if k % self.checkpoint_every == 0 or k == self.steps or over:
                    checkpoint(k)
                if over:
                    break
        summary = {"finished": k >= self.steps, "step": k, "kimg": k * self.batch / 1000, "seconds": self.seconds()}
        if not summary["finished"]:
            self.log(f"stopped at step {k} of {self.steps}; continue with --resume")
        return summary


def lineage(init_from: str | None, network: str, steps: int) -> dict:
    """What a run started from exported weights records: the file, its steps and the total steps
    (``{}`` for a fresh start)."""
    if not init_from:
        return {}
    from faceage.models.io import read_flat_config

    _, before = read_flat_config(init_from, network)
    total = int(before.get("total_steps", before.get("steps", 0))) + steps
    return {"initialised_from": {"file": Path(init_from).name, "steps": before.get("steps")}, "total_steps": total}


def save_parts(out: Path, step: int, parts: dict[str, Any], options: dict, seconds: float) -> Path:
    """Checkpoint ``step`` in ``out`` (the latest two kept): each part's ``state_dict`` under its
    name, the step, the run's options and its wall time so far."""
    from faceage.training.checkpoint_format import save_checkpoint

    state = {name: part.state_dict() for name, part in parts.items()}
    return save_checkpoint(out, step, {**state, "step": step, "options": options, "seconds": seconds}, keep=2)


def load_parts(out: Path, parts: dict[str, Any]) -> tuple[int, float]:
    """Resume: each part loads its state from the newest checkpoint in ``out``; returns (step, the
    run's wall time so far)."""
    from faceage.training.checkpoint_format import load_checkpoint

    state = load_checkpoint(out)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return int(state["step"]), float(state.get("seconds", 0.0))
