"""ONNX export of faceage's generators, each file checked in onnxruntime right after export.

What is written to the output folder::

    mapping.onnx                 z (B, z_dim), truncation (1,) -> w (B, w_dim)
    synthesis_r{R}_c{NNN}.onnx   ws (B, num_ws(R), w_dim) -> image (B, 3, R, R); NNN = ratio x 100
    ipcgan_generator.onnx        image (B, 3, S, S), condition (B, G) -> aged (B, 3, S, S)
    onnx_manifest.json           per file: sha256, inputs/outputs (names, shapes), max |onnx - torch|,
                                 onnxruntime ms per image at batch 1

The synthesis graphs take W+ codes because the direction method edits W+ (encoder -> w + a*n ->
synthesis); sampling runs ``mapping.onnx`` first and repeats w over the ``num_ws`` rows. Noise is the
generator's constant noise images (``noise_mode="const"``), so every graph is deterministic. The batch
axis is dynamic in every graph.

Convention: every tensor is float32; images are (B, 3, H, W) in about [-1, 1]. Condition weights
(B, G) are IPCGAN's group weights (one-hot for one group, two neighbours mixed for ages between
group centres), see ``faceage.models.ipcgan.condition_maps``.

Export uses torch's ``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``; opset
>= 18). The TorchScript exporter cannot make the batch axis dynamic here: the traced batch size
reaches the learned constant's ``expand`` and the channel counts of the sliced transposed
convolutions become unknown, which it refuses. After export, slices of the full network's weights
are constant-folded, so a sub-generator's file holds only the weights it reads. Each graph is
verified in memory and written atomically only once it matched PyTorch, so a failed export leaves
no file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from faceage.atomic import write_bytes_atomic, write_json_atomic
from faceage.checksum import sha256_bytes
from faceage.errors import FaceageError
from faceage.machine import cpu_name
from faceage.models.ipcgan import IPCGANGenerator
from faceage.models.student import Student, apply_student
from faceage.models.stylegan2 import Generator

M = TypeVar("M", bound=nn.Module)

MANIFEST_NAME = "onnx_manifest.json"
MANIFEST_FORMAT = "faceage-onnx"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 18  # the lowest opset torch's dynamo exporter emits
MIN_OPSET = 18
# Fold constant sub-graphs up to this many elements (onnxscript's default, 8192, would leave the
# slices of large conv weights unfolded, i.e. the full network's weights in every sub-model file).
FOLD_LIMIT = 1 << 26
DEFAULT_TOLERANCE = 1e-3  # max |onnxruntime - torch| over the verification batch
BATCH = "batch"  # name of the dynamic axis
# The graph is traced at one batch size and verified at another, which shows the batch axis is
# really dynamic (a batch size baked into a Reshape would fail there).
TRACE_BATCH = 2
VERIFY_BATCH = 3


class ExportError(FaceageError):
    """An export could not be made or did not match PyTorch in onnxruntime."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape ("batch" for the dynamic axis), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ExportedFile:
    """A manifest entry: one verified ONNX file."""

    file: str  # name inside the output folder
    kind: str  # "mapping", "synthesis", "ipcgan_generator" or "student"
    sha256: str
    bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_abs_diff: float  # onnxruntime vs torch on random inputs at batch VERIFY_BATCH
    ms_per_image: float  # onnxruntime, CPU provider, batch 1, median
    resolution: int | None = None  # synthesis, student: output size
    ratio: float | None = None  # synthesis, student: channel ratio

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        return {k: v for k, v in d.items() if v is not None}


# --- wrappers: the exact functions each graph computes ----------------------------------------


class _Mapping(nn.Module):
    """z, truncation psi (1,) -> w_avg + psi * (mapping(z) - w_avg)."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        w = self.generator.mapping_network(z)
        w_avg = self.generator.w_avg.to(w.dtype)
        return w_avg + truncation.to(w.dtype) * (w - w_avg)


class _Synthesis(nn.Module):
    """ws -> image of one (resolution, ratio) sub-generator with constant noise."""

    def __init__(self, generator: Generator, resolution: int, ratio: float) -> None:
        super().__init__()
        self.generator = generator
        self.resolution = resolution
        self.ratio = ratio

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(ws, resolution=self.resolution, ratio=self.ratio, noise_mode="const")


class _IPCGAN(nn.Module):
    """image, condition weights (B, G) float -> aged image."""

    def __init__(self, generator: IPCGANGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.generator(image, condition)


class _Student(nn.Module):
    """face (B, 3, S, S) in [-1, 1], source and target ages (B,) -> (aged face at the sub-network's
    resolution, flow (B, 2, F, F) in pixels of a 256 px face): one sub-network, warp and colour
    applied, so an app gets the aged crop and, for a full-resolution paste, the shape change."""

    def __init__(self, student: Student, resolution: int, ratio: float) -> None:
        super().__init__()
        self.student, self.resolution, self.ratio = student, resolution, ratio

    def forward(
        self, face: torch.Tensor, source: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flow, luma, gain = self.student(face, source, target, self.resolution, self.ratio)
        aged, _ = apply_student(face, flow, luma, gain, self.student.cfg.chroma_factor)
        return aged, flow


def _cpu_copy(module: M, cfg) -> M:
    """A float32 CPU copy of ``module`` built from ``cfg``, in eval mode; the caller's model is untouched."""
    copy = type(module)(cfg)
    copy.load_state_dict(module.state_dict())
    return copy.float().eval()


def _batched_copy(generator: Generator) -> Generator:
    """A copy of ``generator`` whose modulated convs scale activations (``fused_modconv=False``).

    The fused path folds styles into per-sample weights and runs a grouped conv with
    ``groups=batch``: a batch size the trace would bake into the graph. The batched path computes
    the same function with the batch as an ordinary tensor axis.
    """
    return _cpu_copy(generator, dataclasses.replace(generator.cfg, fused_modconv=False))


# --- export + verification ---------------------------------------------------------------------


def ort_session(model: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session; ``threads`` intra-op threads (default: torch's thread count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_exporter() -> None:
    """ExportError unless the packages torch's ONNX exporter needs (onnx, onnxscript) are installed."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs the package(s) {', '.join(missing)}: pip install -r requirements.txt")


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter (deprecations, 'torchvision is not installed') for one export."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _fold_weights(model):
    """Constant-fold the graph with a high size limit, so slices of weights become smaller weights."""
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _export_verified(
    module: nn.Module,
    make_inputs: Callable[[int, torch.Generator], dict[str, torch.Tensor]],
    dynamic: dict[str, tuple[int, ...]],
    output_name: str | tuple[str, ...],
    what: str,
    opset: int,
    tolerance: float,
    timing_repeats: int,
    reference: nn.Module | None = None,
) -> tuple[bytes, float, float, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Export ``module``, run it in onnxruntime, compare with ``reference`` (default ``module``).

    ``make_inputs(batch, rng)`` gives the named inputs; ``dynamic`` names the batch-sized inputs
    (the axes listed are dynamic). Returns (onnx bytes, max abs diff, ms per image at batch 1,
    input specs, output specs). Raises ExportError when the export fails or does not match.
    """
    check_exporter()
    out_names = (output_name,) if isinstance(output_name, str) else tuple(output_name)
    module, reference = module.eval(), (reference or module).eval()
    rng = torch.Generator().manual_seed(0)
    trace_inputs = make_inputs(TRACE_BATCH, rng)
    names = list(trace_inputs)
    batch = torch.export.Dim(BATCH, min=1, max=4096)
    dynamic_shapes = {name: ({axis: batch for axis in dynamic[name]} if name in dynamic else None) for name in names}
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                module,
                tuple(trace_inputs.values()),
                dynamo=True,
                input_names=names,
                output_names=list(out_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
            if program is None:  # only the legacy (dynamo=False) exporter returns nothing
                raise ExportError(f"the ONNX exporter returned no program for {what}")
            data = _fold_weights(program.model_proto).SerializeToString()
    except Exception as exc:  # the exporter raises many types; the user needs which graph failed
        raise ExportError(f"ONNX export of {what} failed: {type(exc).__name__}: {exc}") from exc

    check = make_inputs(VERIFY_BATCH, rng)
    feed = {k: v.numpy() for k, v in check.items()}
    try:
        session = ort_session(data)
        gots = session.run(list(out_names), feed)
    except Exception as exc:  # onnxruntime's errors are not one class either
        raise ExportError(f"onnxruntime cannot run the exported {what}: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        result = reference(*check.values())
    wants = [t.numpy() for t in ((result,) if isinstance(result, torch.Tensor) else result)]
    diff = 0.0
    for name, got, want in zip(out_names, gots, wants):
        if got.shape != want.shape:
            raise ExportError(f"{what}: onnxruntime {name} shape {got.shape} != torch {want.shape}")
        diff = max(diff, float(np.abs(got.astype(np.float64) - want).max()) if got.size else 0.0)
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportError(f"{what}: onnxruntime output differs from torch by {diff:.3g} (> {tolerance:g})")

    one = {k: v.numpy() for k, v in make_inputs(1, rng).items()}
    ms = _median_ms(lambda: session.run(list(out_names), one), warmup=2, repeats=timing_repeats)

    def spec(name: str, tensor: torch.Tensor | np.ndarray, axes: tuple[int, ...]) -> TensorSpec:
        shape = tuple(BATCH if i in axes else int(n) for i, n in enumerate(tensor.shape))
        return TensorSpec(name, shape)

    inputs = tuple(spec(k, v, dynamic.get(k, ())) for k, v in check.items())
    outputs = tuple(spec(name, want, (0,)) for name, want in zip(out_names, wants))
    return data, diff, ms, inputs, outputs


def synthesis_file_name(resolution: int, ratio: float) -> str:
    """``synthesis_r128_c075.onnx`` for (128, 0.75)."""
    return f"synthesis_r{resolution}_c{round(ratio * 100):03d}.onnx"


def _write(out_dir: Path, name: str, kind: str, result, **extra) -> ExportedFile:
    data, diff, ms, inputs, outputs = result
    write_bytes_atomic(out_dir / name, data)
    return ExportedFile(
        file=name,
        kind=kind,
        sha256=sha256_bytes(data),
        bytes=len(data),
        inputs=inputs,
        outputs=outputs,
        max_abs_diff=diff,
        ms_per_image=round(ms, 3),
        **extra,
    )


def default_resolutions(generator: Generator) -> tuple[int, ...]:
    """The sub-resolutions trained by default (32, 64, 128) that ``generator`` has, else its full size."""
    have = tuple(r for r in (32, 64, 128) if r in generator.cfg.resolutions)
    return have or (generator.cfg.resolution,)


def resolve_slices(
    generator: Generator, resolutions: Sequence[int] | None, ratios: Sequence[float] | None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The (resolutions, ratios) to export, defaults filled in; ExportError for ones the generator lacks."""
    if not isinstance(generator, Generator):
        raise ExportError(f"expected a StyleGAN2 Generator, got {type(generator).__name__}")
    resolutions = tuple(dict.fromkeys(resolutions)) if resolutions else default_resolutions(generator)
    ratios = tuple(dict.fromkeys(float(c) for c in ratios)) if ratios else Generator.RATIOS
    for r in resolutions:
        if r not in generator.cfg.resolutions:
            raise ExportError(f"resolution {r} is not one of this generator's: {list(generator.cfg.resolutions)}")
    for c in ratios:
        if not 0.0 < c <= 1.0:
            raise ExportError(f"channel ratio must be in (0, 1], got {c:g}")
    names = [synthesis_file_name(r, c) for r in resolutions for c in ratios]
    if len(set(names)) != len(names):
        raise ExportError(f"ratios {list(ratios)} round to the same file name (ratio x 100)")
    return resolutions, ratios


def export_generator(
    generator: Generator,
    out_dir: str | os.PathLike,
    resolutions: Sequence[int] | None = None,
    ratios: Sequence[float] | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    mapping: bool = True,
    timing_repeats: int = 5,
    progress: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """Write ``mapping.onnx`` and one synthesis graph per (resolution, ratio) into ``out_dir``.

    ``resolutions`` default: :func:`default_resolutions`; ``ratios`` default: ``Generator.RATIOS``.
    Each graph is checked in onnxruntime against ``generator`` itself (not the export copy) before it
    is written. Raises ExportError for a resolution/ratio the generator does not have.
    """
    resolutions, ratios = resolve_slices(generator, resolutions, ratios)
    out_dir = Path(out_dir)
    cfg = generator.cfg
    reference = _cpu_copy(generator, cfg)
    batched = _batched_copy(reference)
    written = []

    def done(entry: ExportedFile) -> None:
        written.append(entry)
        if progress is not None:
            progress(entry)

    if mapping:

        def mapping_inputs(b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
            psi = torch.rand(1, generator=rng) * 0.5 + 0.5
            return {"z": torch.randn(b, cfg.z_dim, generator=rng), "truncation": psi}

        result = _export_verified(
            _Mapping(batched),
            mapping_inputs,
            {"z": (0,)},
            "w",
            "the mapping network",
            opset,
            tolerance,
            timing_repeats,
            reference=_Mapping(reference),
        )
        done(_write(out_dir, "mapping.onnx", "mapping", result))

    for resolution in resolutions:
        need = Generator.num_ws_for(resolution)
        for ratio in ratios:

            def ws_inputs(b: int, rng: torch.Generator, need=need) -> dict[str, torch.Tensor]:
                # real W+ codes: mapped from z (raw Gaussians are far outside the W distribution)
                with torch.no_grad():
                    w = reference.mapping_network(torch.randn(b * need, cfg.z_dim, generator=rng))
                return {"ws": w.reshape(b, need, cfg.w_dim)}

            what = f"the {resolution} px x{ratio:g} sub-generator"
            result = _export_verified(
                _Synthesis(batched, resolution, ratio),
                ws_inputs,
                {"ws": (0,)},
                "image",
                what,
                opset,
                tolerance,
                timing_repeats,
                reference=_Synthesis(reference, resolution, ratio),
            )
            done(
                _write(
                    out_dir,
                    synthesis_file_name(resolution, ratio),
                    "synthesis",
                    result,
                    resolution=resolution,
                    ratio=float(ratio),
                )
            )
    return written


def export_ipcgan(
    generator: IPCGANGenerator,
    out_dir: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    timing_repeats: int = 5,
) -> ExportedFile:
    """Write ``ipcgan_generator.onnx`` (image, condition weights -> aged image) into ``out_dir``."""
    if not isinstance(generator, IPCGANGenerator):
        raise ExportError(f"expected an IPCGANGenerator, got {type(generator).__name__}")
    cfg = generator.cfg
    generator = _cpu_copy(generator, cfg)

    def inputs(b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        image = torch.rand(b, 3, cfg.resolution, cfg.resolution, generator=rng) * 2 - 1
        # mixes of two neighbouring groups, as the method asks for ages between group centres
        first = torch.randint(0, cfg.num_groups - 1, (b,), generator=rng)
        share = torch.rand(b, generator=rng)
        condition = torch.zeros(b, cfg.num_groups)
        condition[torch.arange(b), first] = share
        condition[torch.arange(b), first + 1] = 1 - share
        return {"image": image, "condition": condition}

    result = _export_verified(
        _IPCGAN(generator),
        inputs,
        {"image": (0,), "condition": (0,)},
        "aged",
        "the IPCGAN generator",
        opset,
        tolerance,
        timing_repeats,
    )
    return _write(Path(out_dir), "ipcgan_generator.onnx", "ipcgan_generator", result)


# --- manifest ----------------------------------------------------------------------------------


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest in ``out_dir``, or None when there is none or it is unreadable."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), list):
        return None
    return doc


_SOURCE_OF_KIND = {"mapping": "generator", "synthesis": "generator", "ipcgan_generator": "ipcgan_generator"}


def write_manifest(
    out_dir: str | os.PathLike, entries: Sequence[ExportedFile], sources: dict, opset: int, tolerance: float
) -> Path:
    """Write ``onnx_manifest.json``: these entries, plus earlier entries that still hold.

    ``sources`` maps "generator" / "ipcgan_generator" to what was exported (name, sha256, config).
    An earlier entry is kept if its file is still there with the recorded sha256 and it came from
    a model this run did not export, or from the same weights; so a folder filled by several runs
    (generator now, IPCGAN weights later) lists all of its verified files.
    """
    import onnxruntime

    from faceage.version import __version__

    out_dir = Path(out_dir)
    new = {e.file for e in entries}
    old: dict = read_manifest(out_dir) or {}
    old_sources: dict = old["sources"] if isinstance(old.get("sources"), dict) else {}
    kept = []
    for entry in old.get("files", []):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or "/" in name or name in new or not (out_dir / name).is_file():
            continue
        source = _SOURCE_OF_KIND.get(entry.get("kind"))
        if source in sources and (old_sources.get(source) or {}).get("sha256") != sources[source]["sha256"]:
            continue  # made from other weights than this run's
        if sha256_bytes((out_dir / name).read_bytes()) == entry.get("sha256"):
            kept.append(entry)
    used = {_SOURCE_OF_KIND.get(e.get("kind")) for e in kept}
    merged_sources = {k: v for k, v in old_sources.items() if k in used} | sources
    doc = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "faceage": __version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": opset,
        "tolerance": tolerance,
        "timing": {
            "provider": "CPUExecutionProvider",
            "batch": 1,
            "threads": torch.get_num_threads(),
            "cpu": cpu_name(),
        },
        "sources": merged_sources,
        "files": sorted(kept + [e.to_dict() for e in entries], key=lambda d: d["file"]),
    }
    return write_json_atomic(out_dir / MANIFEST_NAME, doc)


# --- from files on disk ------------------------------------------------------------------------


def load_generator_folder(folder: str | os.PathLike) -> Generator:
    """A StyleGAN2 Generator from a model folder (config.json + model.safetensors), float32, eval."""
    from faceage.models.io import load_model

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"generator folder not found: {folder}")
    return load_model(folder, expect=Generator).float().eval()


def student_file_name(resolution: int, ratio: float) -> str:
    """``student_r128_c050.onnx`` for (128, 0.5)."""
    return f"student_r{resolution}_c{round(ratio * 100):03d}.onnx"


def export_student(
    student: Student,
    out_dir: str | os.PathLike,
    submodels: Sequence[tuple[int, float]] | None = None,
    face_size: int = 256,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    timing_repeats: int = 5,
    progress: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """One graph per sub-network (default: all of them) of the student, each verified in onnxruntime
    against the student itself and timed at batch 1. Inputs: the aligned face at ``face_size``."""
    if not isinstance(student, Student):
        raise ExportError(f"expected a Student, got {type(student).__name__}")
    cfg = student.cfg
    submodels = list(submodels or cfg.sub_models())
    unknown = [s for s in submodels if s not in cfg.sub_models()]
    if unknown:
        raise ExportError(f"the student has no sub-network {unknown[0]}; it has {cfg.sub_models()}")
    reference = _cpu_copy(student, cfg)
    written = []
    for resolution, ratio in submodels:

        def inputs(b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
            return {
                "face": torch.rand(b, 3, face_size, face_size, generator=rng) * 2 - 1,
                "source": torch.rand(b, generator=rng) * 80,
                "target": torch.rand(b, generator=rng) * 80,
            }

        result = _export_verified(
            _Student(reference, resolution, ratio),
            inputs,
            {"face": (0,), "source": (0,), "target": (0,)},
            ("aged", "flow"),
            f"the student's {resolution} px x{ratio:g} sub-network",
            opset,
            tolerance,
            timing_repeats,
        )
        entry = _write(
            Path(out_dir), student_file_name(resolution, ratio), "student", result, resolution=resolution, ratio=ratio
        )
        written.append(entry)
        if progress is not None:
            progress(entry)
    return written


def load_student_weights(path: str | os.PathLike) -> Student:
    """A Student from its weights file (+ the .json beside it), float32, eval."""
    from faceage.models.io import load_flat

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"student weights not found: {path}")
    return load_flat(path, Student, "student.safetensors", "student weights").float().eval()


def load_ipcgan_weights(path: str | os.PathLike) -> IPCGANGenerator:
    """An IPCGANGenerator from its weights file (+ the .json beside it), float32, eval."""
    from faceage.models.io import load_flat

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"IPCGAN weights not found: {path}")
    return load_flat(path, IPCGANGenerator, "ipcgan_generator.safetensors", "IPCGAN generator weights").float().eval()


def export_onnx(
    out_dir: str | os.PathLike,
    generator: str | os.PathLike | None = None,
    ipcgan: str | os.PathLike | None = None,
    student: str | os.PathLike | None = None,
    resolutions: Sequence[int] | None = None,
    ratios: Sequence[float] | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    timing_repeats: int = 5,
    progress: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """``faceage export onnx``: export what is named, verify each file, then write the manifest.

    Both models are loaded (and so checked) before anything is written.
    """
    if generator is None and ipcgan is None and student is None:
        raise ExportError("nothing to export: name a generator folder, IPCGAN weights or student weights")
    check_exporter()
    if opset < MIN_OPSET:
        raise ExportError(f"opset must be >= {MIN_OPSET} (torch's dynamo exporter), got {opset}")
    gen = load_generator_folder(generator) if generator is not None else None
    ipc = load_ipcgan_weights(ipcgan) if ipcgan is not None else None
    stu = load_student_weights(student) if student is not None else None
    if gen is not None:
        resolutions, ratios = resolve_slices(gen, resolutions, ratios)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[ExportedFile] = []
    sources: dict[str, dict] = {}
    if gen is not None:
        assert generator is not None
        weights = Path(generator) / "model.safetensors"
        # names, not paths: the manifest may travel with the files
        sources["generator"] = {
            "name": Path(generator).resolve().name,
            "sha256": sha256_bytes(weights.read_bytes()),
            "config": gen.cfg.to_dict(),
        }
        entries += export_generator(
            gen, out_dir, resolutions, ratios, opset, tolerance, timing_repeats=timing_repeats, progress=progress
        )
    if ipc is not None:
        assert ipcgan is not None
        sources["ipcgan_generator"] = {
            "name": Path(ipcgan).name,
            "sha256": sha256_bytes(Path(ipcgan).read_bytes()),
            "config": ipc.cfg.to_dict(),
        }
        entry = export_ipcgan(ipc, out_dir, opset, tolerance, timing_repeats=timing_repeats)
        entries.append(entry)
        if progress is not None:
            progress(entry)
    if stu is not None:
        assert student is not None
        sources["student"] = {
            "name": Path(student).name,
            "sha256": sha256_bytes(Path(student).read_bytes()),
            "config": stu.cfg.to_dict(),
        }
        subs = [
            (r, c)
            for r, c in stu.cfg.sub_models()
            if (resolutions is None or r in resolutions) and (ratios is None or c in [float(x) for x in ratios])
        ]
        if not subs:
            raise ExportError(f"no sub-network of the student matches; it has {stu.cfg.sub_models()}")
        entries += export_student(
            stu, out_dir, subs, opset=opset, tolerance=tolerance, timing_repeats=timing_repeats, progress=progress
        )
    write_manifest(out_dir, entries, sources, opset, tolerance)
    return entries
