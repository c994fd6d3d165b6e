"""Aging methods by name: the one place that says which methods exist.

The CLI (``--method`` choices of ``faceage age``, ``serve`` and ``bench aging``), the Python API
(``faceage.load``), the web app, the demo and the README's method table (checked by a test) all
read ``METHODS``. Each entry names a loader, the shipped weight files it needs, what it does and
the paper it follows. Loaders import their method lazily, so listing the names (``faceage --help``,
``click.Choice``) never imports torch. Adding a method is one module, one loader function and one
entry in ``METHODS`` (docs/ARCHITECTURE.md, "Adding an aging method").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceage.errors import FaceageError, ModelFileError

if TYPE_CHECKING:  # the names stay importable without numpy for ``faceage --help``
    import click

    from faceage.methods.base import AgingMethod

# the method `faceage age` and `faceage.load()` use when none is named
DEFAULT_METHOD = "prototype"


@dataclass(frozen=True)
class Option:
    """One method option, as ``--set NAME=VALUE`` (``faceage age``, ``serve``, ``bench aging``), a
    Python keyword, and a control on the web page.

    name     the keyword the method's loader takes.
    kind     "number" (float), "integer" or "flag" (on/off); ``convert`` reads a string or a value.
    default  the loader's default (what the page shows first).
    help     one line for help texts and the page.
    web      whether the web page offers it (the ones a user would change).
    low, high  the range a number may take (the page's control; the loader still checks).
    """

    name: str
    kind: str
    default: float | int | bool
    help: str
    web: bool = False
    low: float | None = None
    high: float | None = None

    def convert(self, value: object) -> float | int | bool:
        """``value`` (a string from ``--set`` or the page, or a Python value) as this option's type;
        ``ValueError`` when it is not one or lies outside ``low``..``high``."""
        if self.kind == "flag":
            return _flag(value)
        out: float | int = int(str(value)) if self.kind == "integer" else _number(value)
        if self.low is not None and out < self.low:
            raise ValueError(f"must be >= {self.low:g}")
        if self.high is not None and out > self.high:
            raise ValueError(f"must be <= {self.high:g}")
        return out

    def to_dict(self) -> dict:
        """JSON-ready, for the web page's controls."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "help": self.help,
            "low": self.low,
            "high": self.high,
            "web": self.web,
        }


@dataclass(frozen=True)
class MethodSpec:
    """How to build one method.

    loader        ``loader(weights, device, **options) -> AgingMethod``; ``weights`` None means the
                  shipped files; ``options`` come from ``--set KEY=VALUE`` (strings) or Python callers,
                  and a loader raises ``FaceageError`` naming any option it does not know
                  (``method_options``).
    shipped       file names in ``faceage/weights`` the shipped method needs (all with a manifest
                  entry); empty for a method that needs no weights of its own.
    summary       what the method does, in a few words, for help texts, the web page and the README.
    paper         the title of the publication it follows.
    experimental  its shipped weights miss the project's quality targets (docs carry the numbers):
                  it is labelled so wherever it is offered and is never the default.
    gpu           it runs its networks on ``--device``; False: it runs on the CPU whatever the device
                  (``where_it_runs`` says so).
    options       the options its loader takes (``Option``); adding one is one line here.
    """

    loader: Callable[..., AgingMethod]
    shipped: tuple[str, ...]
    summary: str
    paper: str = ""
    experimental: bool = False
    gpu: bool = True
    options: tuple[Option, ...] = ()

    def label(self) -> str:
        """The summary as help texts and the web app show it."""
        return f"{self.summary} [experimental]" if self.experimental else self.summary

    def known(self) -> dict[str, Callable[[object], object]]:
        """Each option's converter, by name (``method_options``)."""
        return {option.name: option.convert for option in self.options}


def method_options(name: str, options: dict, known: Mapping[str, Callable[[Any], object]]) -> dict:
    """Convert ``options`` with ``known`` (option -> type, e.g. ``int``); ``FaceageError`` naming an
    unknown option or a value its type rejects."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise FaceageError(f"method {name!r} has no option {unknown[0]!r} (its options: {allowed})")
    out = {}
    for key, value in options.items():
        try:
            out[key] = known[key](value)
        except (TypeError, ValueError) as error:
            raise FaceageError(f"method {name!r}: bad value {value!r} for option {key!r} ({error})") from error
    return out


def _ipcgan(weights: str | Path | None, device: str, **options) -> AgingMethod:
    from faceage.methods.ipcgan import IPCGANMethod

    method = IPCGANMethod.from_weights(weights, device=device)
    for key, value in method_options("ipcgan", options, METHODS["ipcgan"].known()).items():
        setattr(method, key, value)
    return method


def _prototype(weights: str | Path | None, device: str, **options) -> AgingMethod:
    from faceage.methods.prototype import PrototypeMethod

    return _loaded("prototype", PrototypeMethod.from_weights, weights, device, options)


def _student(weights: str | Path | None, device: str, **options) -> AgingMethod:
    from faceage.methods.student import StudentMethod

    return _loaded("student", StudentMethod.from_weights, weights, device, options, drop_zero=True)


def _loaded(
    name: str,
    from_weights: Callable[..., AgingMethod],
    weights: str | Path | None,
    device: str,
    options: dict,
    drop_zero: bool = False,
) -> AgingMethod:
    """``from_weights`` with the method's converted options; a value the method rejects becomes a
    ``FaceageError`` naming the method. ``drop_zero``: options given as 0 mean "not given"."""
    settings = method_options(name, options, METHODS[name].known())
    if drop_zero:
        settings = {key: value for key, value in settings.items() if value}
    try:
        return from_weights(weights, device=device, **settings)
    except ValueError as e:
        raise FaceageError(f"method {name!r}: {e}") from None


def _number(value: object) -> float:
    return float(value)  # type: ignore[arg-type]  # str or number; ValueError names the value


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected on/off, got {value!r}")


METHODS: dict[str, MethodSpec] = {
    "prototype": MethodSpec(
        _prototype,
        ("prototypes.safetensors", "prototypes.json"),
        "age prototypes: fold-free shape warp, relit colour, sharp detail, grey strands, per-face target loop",
        "Prototyping and Transforming Facial Textures for Perception Research (Tiddeman, Burt & Perrett, 2001)",
        gpu=False,  # numpy and OpenCV only
        options=(
            Option("strength", "number", 1.0, "scales every change (1: the prototypes' difference)", True, 0.0, 3.0),
            Option("loop", "flag", True, "per face, the strength at which its own age regressor reads the target"),
            Option("shape", "flag", True, "warp the face's shape toward the target age"),
            Option("detail", "flag", True, "add the target age's sharp skin detail (lines, folds, even child skin)"),
            Option("beard", "flag", True, "remove beard and moustache below about 15"),
            Option("hair", "flag", True, "grey the hair for targets above about 50", True),
            Option("non_age", "flag", True, "keep hair and background out of the edit"),
            Option("calibrated", "flag", True, "apply the stored per-target strength gains"),
            Option("refine", "flag", False, "correct each face with the refiner trained against real faces of the age"),
        ),
    ),
    "ipcgan": MethodSpec(
        _ipcgan,
        ("ipcgan_generator.safetensors",),
        "conditional GAN over age groups, with identity and age losses",
        "Face Aging with Identity-Preserved Conditional Generative Adversarial Networks (Wang et al., CVPR 2018)",
        experimental=True,
        options=(Option("batch", "integer", 16, "faces per forward pass", low=1),),
    ),
    "student": MethodSpec(
        _student,
        ("student.safetensors", "student.json"),
        "the default method distilled into one small network with sub-networks, picked by a time budget",
        "A StyleGAN-based face age editing method for mobile terminals (patent), its sub-networks on a distilled network",
        experimental=True,
        options=(
            Option(
                "budget_ms",
                "number",
                0.0,
                "ms per face: the largest sub-network whose measured time here fits (0: the full network)",
                True,
                0.0,
            ),
            Option("resolution", "integer", 0, "a sub-network's output size, 64, 128 or 256 (0: the largest)", low=0),
            Option("ratio", "number", 0.0, "a sub-network's share of channels, 0.25-1 (0: all)", low=0.0, high=1.0),
        ),
    ),
}


def method_option() -> dict:
    """``click.option("--method", ...)`` keywords: every method name, the default when none is named."""
    import click  # here: the registry itself does not need click

    return {"type": click.Choice(method_names()), "default": DEFAULT_METHOD}


def parse_sets(
    ctx: click.Context | None, param: click.Parameter | None, values: tuple[str, ...] | dict[str, str]
) -> dict[str, str]:
    """``--set KEY=VALUE`` (repeatable) -> {KEY: VALUE}; the method's loader converts and checks each
    (``faceage.methods.registry.load_method``). A later KEY replaces an earlier one."""
    if isinstance(values, dict):  # already parsed (ctx.invoke passes the default, ())
        return values
    import click  # here: the registry itself does not need click

    options = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        options[key.strip()] = value
    return options


def set_option(f: Callable) -> Callable:
    """``--set KEY=VALUE``: a method option, as ``faceage bench aging`` takes it (into ``sets``)."""
    import click

    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        callback=parse_sets,
        help="Method option, passed to the method's loader (repeatable). " + options_help(),
    )(f)


def method_help() -> str:
    """``--method`` help: every method with its label (experimental ones say so)."""
    listed = "; ".join(f"{name}: {spec.label()}" for name, spec in METHODS.items())
    return f"Aging method (default {DEFAULT_METHOD}). {listed}."


def options_help() -> str:
    """``--set`` help: each method's options with their defaults (``MethodSpec.options``)."""

    def shown(option: Option) -> str:
        default = ("on" if option.default else "off") if option.kind == "flag" else f"{option.default:g}"
        return f"{option.name}={default} ({option.help})"

    listed = "; ".join(
        f"{name}: {', '.join(shown(o) for o in spec.options)}" for name, spec in METHODS.items() if spec.options
    )
    return f"Options and defaults: {listed}."


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


def where_it_runs(name: str, device: str) -> str | None:
    """A note for a user who asked for a GPU: what runs on it and what on the CPU (None for the CPU)."""
    if device == "cpu":
        return None
    if not METHODS[name].gpu:
        return f"method {name} runs on the CPU (it has no GPU code): --device {device} is not used"
    return f"method {name} runs on {device}; face detection and the age and identity measures run on the CPU"


def load_method(name: str, device: str = "cpu", weights: str | Path | None = None, **options) -> AgingMethod:
    """Build method ``name`` on ``device`` from ``weights`` (a weights file) or its shipped files,
    with method-specific ``options`` (keyword values, or strings from ``--set KEY=VALUE``).

    Raises ``FaceageError`` for an unknown name or option, ``DeviceError`` for a device this machine
    lacks (before anything loads), and ``ModelFileError`` when the weights are missing or do not
    match the network.
    """
    from faceage.machine import check_device

    spec = METHODS.get(name)
    if spec is None:
        raise FaceageError(f"unknown aging method {name!r}; known methods: {', '.join(METHODS)}")
    device = check_device(device)
    if weights is not None:
        if not Path(weights).is_file():
            raise ModelFileError(f"weights file for method {name!r} not found: {weights}")
    elif not _installed(spec):
        raise ModelFileError(
            f"method {name!r} has no weights installed ({', '.join(spec.shipped)} missing from faceage/weights "
            "or its manifest); train them first, or pass a weights file (--weights)"
        )
    return spec.loader(weights, device, **options)
