"""Save and load networks as ``config.json`` + ``model.safetensors`` in one folder, strictly.

Layout of a model folder::

    config.json        {"format": "faceage-model", "version": 1, "class": "Generator", "config": {...}}
    model.safetensors  every parameter and persistent buffer (w_avg, const noise images)

Loading never unpickles anything and refuses files that do not match the network the config
describes: missing keys, unexpected keys and shape mismatches raise ``ModelFileError`` naming
the file and the first offending keys. Both files are written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar, overload

import torch
from torch import nn

from faceage.atomic import write_bytes_atomic, write_json_atomic
from faceage.errors import ModelFileError
from faceage.models.age_regressor import AgeRegressor, AgeRegressorConfig
from faceage.models.config import JsonConfig
from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator
from faceage.models.refiner import Refiner, RefinerConfig
from faceage.models.student import Student, StudentConfig
from faceage.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

M = TypeVar("M", bound=nn.Module)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "faceage-model"
VERSION = 1

# class name in config.json -> (network class, its config dataclass)
MODEL_CLASSES: dict[str, tuple[type[nn.Module], type[JsonConfig]]] = {
    "Generator": (Generator, GeneratorConfig),
    "Discriminator": (Discriminator, DiscriminatorConfig),
    "AgeRegressor": (AgeRegressor, AgeRegressorConfig),
    "IPCGANGenerator": (IPCGANGenerator, IPCGANConfig),
    "Refiner": (Refiner, RefinerConfig),
    "Student": (Student, StudentConfig),
}


def _config_of(model: nn.Module) -> JsonConfig:
    """The config every network keeps as ``cfg`` (each class in MODEL_CLASSES does)."""
    cfg = model.cfg
    if not isinstance(cfg, JsonConfig):
        raise TypeError(f"{type(model).__name__}.cfg is not a network config")
    return cfg


def _short(keys) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
    return ", ".join(keys[:5]) + more


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``module``; any missing/unexpected key or shape mismatch raises ModelFileError."""
    expected = module.state_dict()
    missing = expected.keys() - state_dict.keys()
    unexpected = state_dict.keys() - expected.keys()
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise ModelFileError(f"{source} does not match the network: {'; '.join(parts)}")
    bad = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ModelFileError(f"{source} has tensors of the wrong shape: {'; '.join(bad[:3])}{more}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()}, strict=True)


def save_model(model: nn.Module, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (a Generator or Discriminator) to ``folder``; ``dtype`` e.g. float16 to ship small."""
    from safetensors.torch import save

    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise TypeError(f"cannot save {name}; known classes: {', '.join(MODEL_CLASSES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()
    meta = {"format": FORMAT, "version": VERSION, "class": name, "config": _config_of(model).to_dict()}
    write_bytes_atomic(folder / WEIGHTS_NAME, save(tensors, metadata={"format": "pt"}))
    write_json_atomic(folder / CONFIG_NAME, meta)
    return folder


def read_config_file(path: str | os.PathLike, expect: str | None = None) -> tuple[str, object, dict]:
    """Return (class name, config dataclass, whole document) from a faceage model config JSON.

    ``expect`` names the one class the caller can use; any other class is refused by name.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{expect or 'model'} config is missing: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{expect or 'model'} config {path} is unreadable: {exc}") from None
    cls_name = meta.get("class") if isinstance(meta, dict) else None
    if expect is not None and (not isinstance(meta, dict) or meta.get("format") != FORMAT or cls_name != expect):
        raise ModelFileError(f"{path} is not an {expect} config (format {FORMAT!r})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a faceage model config (format != {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path} has format version {meta.get('version')!r}; this faceage reads {VERSION}")
    if cls_name not in MODEL_CLASSES:
        raise ModelFileError(f"{path} names unknown class {cls_name!r}; known: {', '.join(MODEL_CLASSES)}")
    _, cfg_cls = MODEL_CLASSES[cls_name]
    try:
        cfg = cfg_cls.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} has an invalid {cfg_cls.__name__}: {exc}") from None
    return cls_name, cfg, meta


def read_config(folder: str | os.PathLike) -> tuple[str, object]:
    """Return (class name, config dataclass) from ``folder/config.json``."""
    cls_name, cfg, _ = read_config_file(Path(folder) / CONFIG_NAME)
    return cls_name, cfg


def read_weights(path: Path, what: str = "model weights") -> dict:
    """Read a safetensors file onto the CPU; a missing or unreadable file is a ModelFileError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} are missing: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{what} {path} are unreadable: {exc}") from None


@overload
def load_model(folder: str | os.PathLike, expect: type[M]) -> M: ...


@overload
def load_model(folder: str | os.PathLike, expect: None = None) -> nn.Module: ...


def load_model(folder: str | os.PathLike, expect: type[nn.Module] | None = None) -> nn.Module:
    """Build the network described by ``folder/config.json`` and load its weights strictly (float32, CPU)."""
    folder = Path(folder)
    cls_name, cfg = read_config(folder)
    cls, _ = MODEL_CLASSES[cls_name]
    if expect is not None and cls is not expect:
        raise ModelFileError(f"{folder} holds a {cls_name}, expected a {expect.__name__}")
    weights = folder / WEIGHTS_NAME
    state = read_weights(weights)
    model = cls(cfg)
    load_state_dict_strict(model, state, str(weights))
    return model.eval()


# --- flat weights: NAME.safetensors + NAME.json side by side ---------------------------------------
# Several small networks sit in faceage/weights beside each other, each as two flat files: the
# floating tensors in fp16 and the config (this module's format) plus training metadata.


def flat_config_path(weights: str | os.PathLike) -> Path:
    """The config JSON that belongs to a weights file: same stem, ``.json``."""
    return Path(weights).with_suffix(".json")


def save_flat(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write fp16 safetensors at ``path`` and the config JSON beside it; both atomic.

    ``metadata`` (JSON-serialisable: training data, metrics, ...) goes into the config under
    ``"training"``. Raises ``ValueError`` if a weight does not fit in fp16.
    """
    from safetensors.torch import save as st_save

    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise TypeError(f"cannot save {name}; known classes: {', '.join(MODEL_CLASSES)}")
    path = Path(path)
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if t.is_floating_point():
            half = t.to(torch.float16)
            if not bool(torch.isfinite(half).all()):
                raise ValueError(f"weight '{key}' overflows fp16")
            t = half
        tensors[key] = t.contiguous()
    # One metadata key only: safetensors serialises metadata in hash-map order, and a fixed byte
    # layout keeps the file's sha256 reproducible. The class lives in the config JSON.
    write_bytes_atomic(path, st_save(tensors, metadata={"format": "pt"}))
    doc: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "class": name,
        "config": _config_of(model).to_dict(),
    }
    if metadata:
        doc["training"] = metadata
    write_bytes_atomic(flat_config_path(path), (json.dumps(doc, indent=2) + "\n").encode())
    return path


def read_flat_config(path: str | os.PathLike, expect: str) -> tuple[object, dict]:
    """(config, training metadata) from the JSON that belongs to weights file ``path``."""
    _, config, doc = read_config_file(flat_config_path(path), expect=expect)
    return config, dict(doc.get("training") or {})


def load_flat(path: str | os.PathLike | None, expect: type[M], shipped_name: str, what: str) -> M:
    """Build ``expect`` from ``path`` (+ its ``.json``) strictly, fp32, eval mode.

    ``path=None`` loads ``shipped_name`` from faceage/weights after checking it against the
    weights manifest. Missing/corrupt files and mismatched tensors raise ``ModelFileError``.
    """
    if path is None:
        from faceage.assets import verify_shipped

        path = verify_shipped(shipped_name)
    path = Path(path)
    config, _ = read_flat_config(path, expect.__name__)
    model = expect(config)
    load_state_dict_strict(model, read_weights(path, what), str(path))
    return model.eval()


# --- the age regressor's shipped weights ------------------------------------------------------------

AGE_REGRESSOR_SHIPPED = "age_regressor.safetensors"  # in faceage/weights, listed in its manifest.json


def save_age_regressor(model: AgeRegressor, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write fp16 safetensors at ``path`` and the config JSON beside it (``save_flat``)."""
    return save_flat(model, path, metadata)


def read_age_regressor_config(path: str | os.PathLike) -> tuple[AgeRegressorConfig, dict]:
    """(config, training metadata) from the JSON that belongs to weights file ``path``."""
    config, training = read_flat_config(path, AgeRegressor.__name__)
    assert isinstance(config, AgeRegressorConfig)
    return config, training


def load_age_regressor(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> AgeRegressor:
    """Build the age regressor from ``path`` (+ its ``.json`` config), strictly; eval mode, fp32.

    ``path=None`` loads the shipped weights (``faceage/weights/age_regressor.safetensors``) after
    checking them against the weights manifest. Raises ``ModelFileError`` for a missing or corrupt
    file, and for missing, unexpected or mis-shaped tensors. Freezing (``requires_grad_(False)``)
    is left to the caller: a loss usually wants it, fine-tuning does not.
    """
    return load_flat(path, AgeRegressor, AGE_REGRESSOR_SHIPPED, "age regressor weights").to(device)
