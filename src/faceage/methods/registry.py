"""Aging methods by name: the one place the CLI, the Python API and the demo learn which exist.

Each entry names a loader and the shipped weight files it needs. Loaders import their method
lazily, so listing the names (``faceage --help``, ``click.Choice``) never imports torch. Adding a
method is one loader function and one line in ``METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faceage.errors import FaceageError, ModelFileError



@dataclass(frozen=True)
class MethodSpec:
    """How to build one method.

    loader        ``loader(weights, device) -> AgingMethod``; ``weights`` None means the shipped files.
    shipped       file names in ``faceage/weights`` the shipped method needs (all with a manifest entry).
    summary       one line for help texts.
    experimental  its shipped weights miss the project's quality targets (docs carry the numbers):
                  it is labelled so wherever it is offered and is never the default.
    """

    loader: Callable[..., object]
    shipped: tuple[str, ...]
    summary: str
    experimental: bool = False

    def label(self) -> str:
        """The summary as help texts and the web app show it."""
        return f"{self.summary} [experimental]" if self.experimental else self.summary


def _ipcgan(weights: str | Path | None, device: str):
    from faceage.methods.ipcgan import IPCGANMethod

    return IPCGANMethod.from_weights(weights, device=device)


METHODS: dict[str, MethodSpec] = {
    "ipcgan": MethodSpec(_ipcgan, ("ipcgan_generator.safetensors",), "conditional age GAN (IPCGAN)",
                         experimental=True),
}

# The method `faceage age`, `faceage serve` and `faceage.load()` use when none is named: the first
# one that is not experimental; None while every method is (then a method must be named).
DEFAULT_METHOD: str | None = next((name for name, spec in METHODS.items() if not spec.experimental), None)


def method_option() -> dict:
    """``click.option("--method", ...)`` keywords: the default, or ``required`` when there is none
    (click 8.3 treats an explicit ``default=None`` as a given value, so it is left out)."""
    import click  # here: the registry itself does not need click

    choice = {"type": click.Choice(method_names())}
    if DEFAULT_METHOD is None:
        return {**choice, "required": True}
    return {**choice, "default": DEFAULT_METHOD}


def method_help() -> str:
    """``--method`` help: every method with its label, and whether naming one is required."""
    listed = "; ".join(f"{name}: {spec.label()}" for name, spec in METHODS.items())
    if DEFAULT_METHOD is None:
        return f"Aging method (required: every method is experimental). {listed}."
    return f"Aging method. {listed}."


def method_names() -> list[str]:
    """Every registered method, installed or not."""
    return list(METHODS)


def _installed(spec: MethodSpec) -> bool:
    from faceage.assets import WEIGHTS_DIR, read_manifest

    manifest = read_manifest()
    return all((WEIGHTS_DIR / name).is_file() and name in manifest for name in spec.shipped)


def available_methods() -> list[str]:
    """The registered methods whose shipped weights are installed (file present, listed in the manifest)."""
    return [name for name, spec in METHODS.items() if _installed(spec)]


def resolve_method(name: str | None) -> str:
    """``name``, or the default method; a one-line ``FaceageError`` when none is named and there is none."""
    if name is not None:
        return name
    if DEFAULT_METHOD is None:
        listed = ", ".join(f"{n} ({spec.label()})" for n, spec in METHODS.items())
        raise FaceageError(f"no default aging method (every method is experimental): name one of {listed}")
    return DEFAULT_METHOD


def load_method(name: str, device: str = "cpu", weights: str | Path | None = None):
    """Build method ``name`` on ``device`` from ``weights`` (a weights file) or its shipped files.

    Raises ``FaceageError`` for an unknown name and ``ModelFileError`` when the weights are missing
    or do not match the network.
    """
    spec = METHODS.get(name)
    if spec is None:
        raise FaceageError(f"unknown aging method {name!r}; known methods: {', '.join(METHODS)}")
    if weights is not None:
        if not Path(weights).is_file():
            raise ModelFileError(f"weights file for method {name!r} not found: {weights}")
    elif not _installed(spec):
        raise ModelFileError(
            f"method {name!r} has no weights installed ({', '.join(spec.shipped)} missing from faceage/weights "
            "or its manifest); train them first, or pass a weights file (--weights)"
        )
    return spec.loader(weights, device)
