"""What `pip install faceage` declares is what the code imports (the wheel check in CI proves it
end to end; this catches a missing declaration in a second, without building anything)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import names whose distribution metadata does not list them as a top-level package
_UNLISTED = {"dlib": "dlib-bin"}
# imported only by the commands of an extra (faceage[train], faceage[ray]), each inside its function
_EXTRAS_ONLY = {"stlpips_pytorch", "ray", "pyarrow"}


def _declared(extras: bool) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    if extras:
        requirements += sum(project["optional-dependencies"].values(), [])
    return {re.split(r"[<>=!~ \[;]", r)[0].lower().replace("_", "-") for r in requirements}


def _third_party_imports() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "faceage").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "faceage":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    distributions = importlib.metadata.packages_distributions()
    runtime, everything = _declared(extras=False), _declared(extras=True)
    for module, where in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])} or {_UNLISTED[module]}
        declared = everything if module in _EXTRAS_ONLY else runtime
        assert names & declared, f"{where} imports {module} ({', '.join(sorted(names))}), not in pyproject.toml"
