"""Pick the sub-model that fits a latency budget on this machine (step S4 of
*A StyleGAN-based face age editing method for mobile terminals*).

That method chooses a (resolution, channel ratio) pair by running a sub-model, timing it, and
stepping down while it is too slow (S41-S44). Here every candidate is timed once (batch 1,
warm-up runs, then the median of a few runs), the times are cached on disk, and
:meth:`LatencyTable.choose_submodel` returns the highest-quality sub-model whose measured time fits.

Quality order: output pixels x channel ratio (``resolution**2 * ratio``), the cost that method
trades against time; ties go to the faster sub-model, then to the higher resolution.

Cache: one JSON file, ``$XDG_CACHE_HOME/faceage/latency.json`` (``~/.cache/faceage/latency.json``
without XDG_CACHE_HOME), holding entries keyed by a sha256 of everything that changes a timing:
the model (its weights' sha256 or config, the caller's ``model_id``), torch version, device,
intra-op thread count, CPU model (or GPU name) and batch size (not the number of runs). Written
atomically; an unreadable or malformed cache is ignored and rewritten.

The thing timed is any callable ``run(resolution, ratio)`` that computes one batch-1 result, so
the same table serves the generator's sub-generators now and the encoder + generator chain later.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from faceage.atomic import write_json_atomic
from faceage.machine import device_name

CACHE_FORMAT = "faceage-latency"
CACHE_VERSION = 1
CACHE_NAME = "latency.json"

SubModel = tuple[int, float]  # (output resolution, channel ratio)


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/faceage/latency.json``, or ``~/.cache/faceage/latency.json``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceage" / CACHE_NAME


def cost(submodel: SubModel) -> float:
    """The quality/cost order of sub-models: output pixels x channel ratio."""
    resolution, ratio = submodel
    return resolution * resolution * ratio


def _label(submodel: SubModel) -> str:
    resolution, ratio = submodel
    return f"{int(resolution)}x{float(ratio):g}"


def _parse_label(label: str) -> SubModel:
    res, ratio = label.split("x")
    return int(res), float(ratio)


def model_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a network's config and weights: a ``model_id`` for modules not loaded from a file."""
    digest = hashlib.sha256()
    cfg = getattr(module, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        digest.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    digest.update(type(module).__name__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class BudgetChoice:
    """The sub-model chosen for a budget.

    ``fits`` is False when no candidate's measured time is within the budget; the smallest (by
    cost) is returned then, and the caller should warn that the budget cannot be met.
    """

    resolution: int
    ratio: float
    latency_ms: float
    budget_ms: float
    fits: bool

    @property
    def submodel(self) -> SubModel:
        return self.resolution, self.ratio


def choose_submodel(latencies: Mapping[SubModel, float], budget_ms: float) -> BudgetChoice:
    """The highest-cost sub-model whose latency is <= ``budget_ms``, else the cheapest (fits=False).

    Monotone: a larger budget never gives a cheaper sub-model.
    """
    if not latencies:
        raise ValueError("no sub-models to choose from")
    if not (isinstance(budget_ms, (int, float)) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ValueError(f"budget must be a positive number of milliseconds, got {budget_ms!r}")
    fitting = [s for s, ms in latencies.items() if ms <= budget_ms]
    if fitting:
        best = max(fitting, key=lambda s: (cost(s), -latencies[s], s[0]))
        return BudgetChoice(best[0], best[1], latencies[best], float(budget_ms), True)
    smallest = min(latencies, key=lambda s: (cost(s), latencies[s]))
    return BudgetChoice(smallest[0], smallest[1], latencies[smallest], float(budget_ms), False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LatencyTable:
    """Measured batch-1 latency of each sub-model, measured once per machine and cached.

    ``run(resolution, ratio)`` computes one batch-1 result of that sub-model (its own inputs ready,
    under ``no_grad``); ``model_id`` names the model (weights sha256, or :func:`model_fingerprint`).
    ``cache_path=None`` uses :func:`default_cache_path`; ``cache=False`` keeps times in memory only.
    """

    def __init__(
        self,
        run: Callable[[int, float], object],
        submodels: Iterable[SubModel],
        model_id: str,
        device: str | torch.device = "cpu",
        cache_path: str | os.PathLike | None = None,
        cache: bool = True,
        warmup: int = 2,
        repeats: int = 5,
    ) -> None:
        self.run = run
        self.submodels = tuple(dict.fromkeys((int(r), float(c)) for r, c in submodels))
        if not self.submodels:
            raise ValueError("no sub-models given")
        for r, c in self.submodels:
            if r < 1 or not 0.0 < c <= 1.0:
                raise ValueError(f"bad sub-model (resolution {r}, ratio {c})")
        if warmup < 0 or repeats < 1:
            raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
        self.model_id = model_id
        self.device = torch.device(device)
        self.cache_path = None if not cache else Path(cache_path) if cache_path is not None else default_cache_path()
        self.warmup = warmup
        self.repeats = repeats
        self.measured_now = 0  # sub-models timed by this object (not read from the cache)
        self._latencies: dict[SubModel, float] = {}

    # -- cache key -------------------------------------------------------------------------------
    def context(self) -> dict:
        """Everything that changes a measurement; its sha256 is the cache key."""
        return {
            "model": self.model_id,
            "torch": torch.__version__,
            "device": str(self.device),
            "hardware": device_name(self.device),
            "threads": torch.get_num_threads(),
            "batch": 1,
        }

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.context(), sort_keys=True).encode()).hexdigest()

    # -- cache file ------------------------------------------------------------------------------
    def _read_cache(self) -> dict:
        """The cache document, or a fresh one when the file is missing, unreadable or malformed."""
        empty = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": {}}
        if self.cache_path is None:
            return empty
        try:
            doc = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return empty
        if (
            not isinstance(doc, dict)
            or doc.get("format") != CACHE_FORMAT
            or doc.get("version") != CACHE_VERSION
            or not isinstance(doc.get("entries"), dict)
        ):
            return empty
        return doc

    def _cached_times(self, doc: dict) -> dict[SubModel, float]:
        entry = doc["entries"].get(self.key())
        times = entry.get("ms") if isinstance(entry, dict) else None
        if not isinstance(times, dict):
            return {}
        out = {}
        for label, ms in times.items():
            try:
                submodel = _parse_label(label)
            except (ValueError, AttributeError):
                continue
            if isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0:
                out[submodel] = float(ms)
        return out

    def _write_cache(self, times: dict[SubModel, float]) -> None:
        if self.cache_path is None:
            return
        doc = self._read_cache()  # again: another process may have added entries while we measured
        doc["entries"][self.key()] = {
            "context": self.context(),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "protocol": {"warmup": self.warmup, "repeats": self.repeats, "statistic": "median"},
            "ms": {_label(s): round(ms, 4) for s, ms in sorted(times.items())},
        }
        try:
            write_json_atomic(self.cache_path, doc)
        except OSError:
            pass  # a read-only cache folder costs a re-measurement next time, nothing else

    # -- measuring -------------------------------------------------------------------------------
    def measure(self, submodel: SubModel) -> float:
        """Median milliseconds of ``run(*submodel)`` at batch 1 (no cache)."""
        resolution, ratio = submodel
        for _ in range(self.warmup):
            self.run(resolution, ratio)
        _sync(self.device)
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            self.run(resolution, ratio)
            _sync(self.device)
            times.append((time.perf_counter() - start) * 1000.0)
        self.measured_now += 1
        return statistics.median(times)

    def latencies(self) -> dict[SubModel, float]:
        """{(resolution, ratio): ms} for every sub-model; measures only those not cached yet."""
        if all(s in self._latencies for s in self.submodels):
            return {s: self._latencies[s] for s in self.submodels}
        cached = self._cached_times(self._read_cache())
        missing = [s for s in self.submodels if s not in cached]
        for submodel in missing:
            cached[submodel] = self.measure(submodel)
        if missing:
            self._write_cache(cached)
        self._latencies.update(cached)
        return {s: self._latencies[s] for s in self.submodels}

    def choose_submodel(self, budget_ms: float) -> BudgetChoice:
        """The highest-quality sub-model whose measured latency fits ``budget_ms`` (see module doc)."""
        return choose_submodel(self.latencies(), budget_ms)


def generator_submodels(
    generator, resolutions: Iterable[int] | None = None, ratios: Iterable[float] | None = None
) -> tuple[SubModel, ...]:
    """Every (resolution, ratio) pair of a StyleGAN2 Generator (default: resolutions >= 32, all ratios)."""
    from faceage.models.stylegan2 import Generator

    if resolutions is None:
        resolutions = [r for r in generator.cfg.resolutions if r >= 32] or [generator.cfg.resolution]
    ratios = Generator.RATIOS if ratios is None else ratios
    return tuple((int(r), float(c)) for r in resolutions for c in ratios)


def generator_latency_table(
    generator,
    resolutions: Iterable[int] | None = None,
    ratios: Iterable[float] | None = None,
    model_id: str | None = None,
    device: str | torch.device | None = None,
    **kwargs,
) -> LatencyTable:
    """A :class:`LatencyTable` timing ``generator.synthesis`` (W+ -> image, constant noise) at batch 1.

    ``model_id`` default: :func:`model_fingerprint` of the generator. ``kwargs`` go to LatencyTable.
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    submodels = generator_submodels(generator, resolutions, ratios)
    for r, c in submodels:
        generator._check_slice(r, c)  # ValueError for a pair this generator does not have
    seed = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn(1, generator.cfg.z_dim, generator=seed).to(device)
        ws = generator.mapping(z, update_avg=False).unsqueeze(1).repeat(1, generator.num_ws, 1)

    @torch.no_grad()
    def run(resolution: int, ratio: float) -> torch.Tensor:
        return generator.synthesis(ws, resolution=resolution, ratio=ratio, noise_mode="const")

    return LatencyTable(run, submodels, model_id or model_fingerprint(generator), device=device, **kwargs)
