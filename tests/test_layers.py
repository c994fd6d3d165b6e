"""The house's plan (docs/ARCHITECTURE.md, "Layers") held against every import in src/faceage.

Every ``import`` and ``from ... import`` is read with ``ast``, including those inside functions
(a lazy import is still a dependency). A module may import its own layer or a layer below it; the
training side (``data``, ``training``) is never imported by run-time code. Any upward import, any
unplaced module and any import cycle between modules fails, naming the file and line.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "faceage"

# Bottom up. A module belongs to the first layer with a matching pattern (fnmatch on the dotted
# name), so the command modules beside each package are matched first: they are interfaces.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "interfaces",
        (
            "faceage",
            "faceage.__main__",
            "faceage.cli",
            "faceage.cli_options",
            "faceage.batch",
            "faceage.ray_engine",
            "faceage.*.commands",
            "faceage.*.*_commands",
            "faceage.serve",
            "faceage.serve.*",
            "faceage.export",
            "faceage.export.*",
            "faceage.bench",
            "faceage.bench.*",
        ),
    ),
    (
        "core",
        (
            "faceage.errors",
            "faceage.atomic",
            "faceage.machine",
            "faceage.filenames",
            "faceage._native",
            "faceage.age_groups",
            "faceage.assets",
            "faceage.checksum",
            "faceage.version",
            "faceage.runtime",
        ),
    ),
    ("imageio", ("faceage.imageio",)),
    ("faces", ("faceage.faces", "faceage.faces.*")),
    ("models", ("faceage.models", "faceage.models.*")),
    # the method interface (numpy only): the benchmark's evaluators run methods through it
    ("method interface", ("faceage.methods.base",)),
    ("evaluators", ("faceage.eval", "faceage.eval.*")),
    ("data", ("faceage.data", "faceage.data.*")),
    ("training", ("faceage.training", "faceage.training.*")),
    ("engine", ("faceage.methods.engine",)),
    ("methods", ("faceage.methods", "faceage.methods.*")),
    ("outputs", ("faceage.outputs", "faceage.outputs.*")),
]

# What each layer may import besides itself: the run-time column, bottom up, and the training side.
RUNTIME = ["core", "imageio", "faces", "models", "method interface", "evaluators", "methods", "engine", "outputs"]
MAY_IMPORT: dict[str, set[str]] = {name: set(RUNTIME[:i]) for i, name in enumerate(RUNTIME)}
MAY_IMPORT["data"] = {"core", "imageio", "faces"}
MAY_IMPORT["training"] = {"core", "imageio", "faces", "models", "evaluators", "data"}
MAY_IMPORT["interfaces"] = {name for name, _ in LAYERS} - {"interfaces"}


@dataclass(frozen=True)
class Import:
    source: str  # dotted module that imports
    target: str  # dotted module imported
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    for name, patterns in LAYERS:
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return name
    return None


def imports_of(path: Path, modules: dict[str, Path], text: str | None = None) -> list[Import]:
    """Every faceage module that ``path`` (or ``text`` read as if it stood there) imports,
    wherever in the file the import stands."""
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found = []
    code = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(code, str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # ``from faceage.data import split`` imports the submodule faceage.data.split
            subs = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in modules]
            targets = subs if len(subs) == len(node.names) else [module, *subs]
        for target in targets:
            while target and target not in modules:  # ``import faceage.x.y`` where y is a name
                target = target.rpartition(".")[0]
            if target.startswith("faceage") and target != source:
                found.append(Import(source, target, path, node.lineno))
    return found


@functools.cache
def all_imports() -> list[Import]:
    modules = all_modules()
    return [imp for path in modules.values() for imp in imports_of(path, modules)]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(module for module in all_modules() if layer_of(module) is None)
    assert not unplaced, f"modules on no layer (add them to LAYERS and docs/ARCHITECTURE.md): {unplaced}"


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for imp in all_imports():
        low, high = layer_of(imp.source), layer_of(imp.target)
        if low and high and low != high and high not in MAY_IMPORT[low]:
            wrong.append(f"{imp.where()}: {imp.source} ({low}) imports {imp.target} ({high})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        graph.setdefault(imp.source, set()).add(imp.target)
    cycles = [scc for scc in strongly_connected(graph) if len(scc) > 1]
    assert not cycles, f"modules that import each other: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with their modules sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


@pytest.mark.parametrize(
    ("code", "module", "expected"),
    [
        ("from faceage.cli_options import run_per_file", "faceage.methods.commands", "faceage.cli_options"),
        (
            "def f():\n    from faceage.training.losses import box_downsample",
            "faceage.eval.fid",
            "faceage.training.losses",
        ),
        ("from faceage.data import split as s", "faceage.data.prepare", "faceage.data.split"),
        ("from . import engine", "faceage.methods.registry", "faceage.methods.engine"),
        ("import faceage.assets as assets", "faceage.data.prepare", "faceage.assets"),
    ],
)
def test_the_reader_sees_every_kind_of_import(code: str, module: str, expected: str) -> None:
    """The checks above are only as good as the import reader: lazy, relative and submodule imports."""
    path = SRC.joinpath(*module.split(".")).with_suffix(".py")
    assert expected in [imp.target for imp in imports_of(path, all_modules(), text=code)]


def test_an_upward_import_is_caught() -> None:
    """A run-time module that imports the training side, or a lower layer that imports a higher one."""
    assert "training" not in MAY_IMPORT["methods"] and "data" not in MAY_IMPORT["engine"]
    assert "outputs" not in MAY_IMPORT["engine"] and "interfaces" not in MAY_IMPORT["outputs"]
    assert layer_of("faceage.methods.commands") == "interfaces" and layer_of("faceage.methods.engine") == "engine"
    assert layer_of("faceage.bench.aging") == "interfaces" and layer_of("faceage.eval.fid") == "evaluators"
