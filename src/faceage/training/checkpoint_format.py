"""Training checkpoints: one nested state dict, split into safetensors parts of at most 16 MiB.

Layout in the run folder, for step 123::

    ckpt-000000123.part000.safetensors   tensors only, each part <= ``max_part_bytes``
    ckpt-000000123.part001.safetensors
    ...
    ckpt-000000123.json                  the index: format, step, parts with size + sha256, and a
                                         JSON "skeleton" of the state with every tensor replaced
                                         by a reference to its key in the parts

Why this shape: the files come back from a GPU machine through a channel that only carries files
of at most 16 MiB, and nothing in a checkpoint may be pickled code (``weights_only`` spirit), so
tensors go to safetensors and everything else (config, counters, RNG states) to JSON. Tensors
larger than a part are split into chunks and reassembled on load.

Atomicity: parts are written under temporary names, fsynced and renamed; the index is written
last (also via rename), so a checkpoint exists exactly when its index does, and a crash while
saving leaves the previous checkpoint intact. Loading verifies every part's sha256.

The skeleton keeps the Python types JSON cannot (tuples, int dict keys as in optimizer state,
numpy arrays, tensors), so ``load(save(x)) == x`` for the state dicts trainers use.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from faceage.atomic import fsync_dir, write_bytes_atomic
from faceage.errors import FaceageError

FORMAT = "faceage-train-checkpoint"
FORMAT_VERSION = 1
MAX_PART_BYTES = 16 * 1024 * 1024
_INDEX_RE = re.compile(r"^ckpt-(\d+)\.json$")


class CheckpointError(FaceageError):
    """A checkpoint is missing, incomplete, corrupt or of another format."""


# -- skeleton encoding -------------------------------------------------------------------------


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors/arrays by references, keep JSON-able structure; fill ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        if key in tensors:
            raise ValueError(f"duplicate tensor key {key!r}")
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = path or "array"
        tensors[key] = torch.from_numpy(
            np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "iub" else np.float64)
        )
        return {"__ndarray__": key, "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, f"{path}/{k}" if path else k, tensors) for k, v in obj.items()}}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"unsupported dict key type {type(k).__name__} at {path!r}")
            items.append([k, _flatten(v, f"{path}/{k}" if path else str(k), tensors)])
        return {"__items__": items}
    if isinstance(obj, (list, tuple)):
        tag = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {tag: [_flatten(v, f"{path}/{i}" if path else str(i), tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__ndarray__" in node:
            return tensors[node["__ndarray__"]].numpy().astype(np.dtype(node["dtype"]))
        if "__dict__" in node:
            return {k: _unflatten(v, tensors) for k, v in node["__dict__"].items()}
        if "__items__" in node:
            return {k: _unflatten(v, tensors) for k, v in node["__items__"]}
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
        if "__list__" in node:
            return [_unflatten(v, tensors) for v in node["__list__"]]
        raise CheckpointError(f"malformed checkpoint skeleton node with keys {sorted(node)}")
    return node


# -- packing into parts ------------------------------------------------------------------------


def _header_estimate(key: str, ndim: int) -> int:
    # safetensors header entry: {"key":{"dtype":"BF16","shape":[..],"data_offsets":[a,b]}}
    return len(key.encode()) + 80 + 22 * ndim


def _pack(
    tensors: dict[str, torch.Tensor], max_part_bytes: int
) -> tuple[list[dict[str, torch.Tensor]], dict[str, dict]]:
    """Greedy packing into parts; tensors too large for one part become chunks ``key#i``."""
    budget = max_part_bytes - 4096  # room for the JSON header and its 8-byte length prefix
    parts: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    chunked: dict[str, dict] = {}

    def place(key: str, t: torch.Tensor) -> None:
        nonlocal used
        need = t.numel() * t.element_size() + _header_estimate(key, t.ndim)
        if used + need > budget and parts[-1]:
            parts.append({})
            used = 0
        parts[-1][key] = t
        used += need

    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes + _header_estimate(key, t.ndim) <= budget:
            place(key, t)
            continue
        flat = t.reshape(-1)
        per_chunk = max(1, (budget - 256) // t.element_size())
        n_chunks = (flat.numel() + per_chunk - 1) // per_chunk
        chunked[key] = {"chunks": n_chunks, "shape": list(t.shape)}
        for i in range(n_chunks):
            place(f"{key}#{i}", flat[i * per_chunk : (i + 1) * per_chunk].clone())
    return [p for p in parts if p], chunked


def checkpoint_stem(step: int) -> str:
    return f"ckpt-{step:09d}"


def save_checkpoint(
    run_dir: str | Path, step: int, state: dict, max_part_bytes: int = MAX_PART_BYTES, keep: int | None = 2
) -> Path:
    """Write ``state`` as checkpoint ``step`` in ``run_dir``; return the index path.

    ``keep``: how many checkpoints (newest by step) to keep in ``run_dir`` afterwards; None keeps
    all. Call from one process only (rank 0).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    parts, chunked = _pack(tensors, max_part_bytes)
    stem = checkpoint_stem(step)
    part_entries = []
    for i, part in enumerate(parts):
        data = st_save(part)
        if len(data) > max_part_bytes:
            raise CheckpointError(f"part {i} of {stem} is {len(data)} bytes > limit {max_part_bytes}")
        name = f"{stem}.part{i:03d}.safetensors"
        write_bytes_atomic(run_dir / name, data)
        part_entries.append(
            {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "keys": len(part)}
        )
    index = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "step": int(step),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "parts": part_entries,
        "chunked": chunked,
        "skeleton": skeleton,
    }
    index_path = run_dir / f"{stem}.json"
    write_bytes_atomic(index_path, json.dumps(index, indent=1).encode())
    fsync_dir(run_dir)
    if keep is not None:
        prune_checkpoints(run_dir, keep=keep, protect=index_path)
    return index_path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Index files in ``run_dir``, oldest first (by step)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _INDEX_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_files(index_path: str | Path) -> list[Path]:
    """The index and all its part files."""
    index_path = Path(index_path)
    index = _read_index(index_path)
    return [index_path] + [index_path.parent / e["file"] for e in index["parts"]]


def prune_checkpoints(run_dir: str | Path, keep: int, protect: Path | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints (index first, so none is left half-valid)."""
    indexes = list_checkpoints(run_dir)
    for index_path in indexes[: max(0, len(indexes) - keep)]:
        if protect is not None and index_path.resolve() == Path(protect).resolve():
            continue
        try:
            files = checkpoint_files(index_path)
        except CheckpointError:
            files = [index_path]
        index_path.unlink(missing_ok=True)
        for f in files[1:]:
            f.unlink(missing_ok=True)


def _read_index(index_path: Path) -> dict:
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint index not found: {index_path}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint index {index_path}: {exc}") from exc
    if index.get("format") != FORMAT:
        raise CheckpointError(f"{index_path} is not a faceage training checkpoint (format {index.get('format')!r})")
    if index.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{index_path}: unsupported checkpoint version {index.get('version')!r}")
    return index


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint index path as given, or a run folder's newest complete checkpoint."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no complete checkpoint in {path}")
    return found


def load_checkpoint(path: str | Path, verify: bool = True) -> dict:
    """Read a checkpoint (its index path, or a run folder: the newest valid one) into CPU tensors.

    Raises :class:`CheckpointError` on a missing part, a size or sha256 mismatch, or a bad index.
    """
    path = resolve_checkpoint(path)
    index = _read_index(path)
    tensors: dict[str, torch.Tensor] = {}
    for entry in index["parts"]:
        part_path = path.parent / entry["file"]
        try:
            data = part_path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"checkpoint part missing or unreadable: {part_path}") from exc
        if len(data) != entry["bytes"]:
            raise CheckpointError(f"checkpoint part {part_path} has {len(data)} bytes, index says {entry['bytes']}")
        if verify and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"checkpoint part {part_path} is corrupt (sha256 mismatch)")
        tensors.update(st_load(data))
    for key, info in index.get("chunked", {}).items():
        pieces = [tensors.pop(f"{key}#{i}") for i in range(info["chunks"])]
        tensors[key] = torch.cat(pieces).reshape(info["shape"])
    state = _unflatten(index["skeleton"], tensors)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint state is not a dict")
    return state


def latest_checkpoint(run_dir: str | Path, verify: bool = True) -> Path | None:
    """Newest checkpoint in ``run_dir`` whose parts are all present (and intact if ``verify``)."""
    for index_path in reversed(list_checkpoints(run_dir)):
        try:
            index = _read_index(index_path)
            ok = True
            for entry in index["parts"]:
                p = index_path.parent / entry["file"]
                if not p.is_file() or p.stat().st_size != entry["bytes"]:
                    ok = False
                    break
                if verify and hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
                    ok = False
                    break
        except CheckpointError:
            ok = False
        if ok:
            return index_path
        warnings.warn(f"skipping incomplete or corrupt checkpoint {index_path}", stacklevel=2)
    return None


def capture_rng_state() -> dict:
    """All global RNG states that training draws from: torch CPU and CUDA, numpy, python."""
    state = {
        "torch_cpu": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    cuda = state.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in cuda])
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda)} devices, this machine has "
                f"{torch.cuda.device_count()}; CUDA random streams restart (resume is not bit-exact)",
                stacklevel=2,
            )
