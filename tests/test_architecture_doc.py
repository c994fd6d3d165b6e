"""docs/ARCHITECTURE.md's module table against the tree: every module of src/faceage is named there.

A row names modules as ``faceage.a.b`` and siblings as ``.c`` (``faceage.a.c``); a package row
(``faceage.training``) covers the modules inside it. A module added without a line in the table,
or a row naming a module that no longer exists, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "faceage"


def tree_modules(packages: bool = False) -> set[str]:
    """Dotted names of the modules (or, with ``packages``, only of the packages) in src/faceage."""
    out = set()
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            out.add(".".join(parts[:-1]))
        elif not packages:
            out.add(".".join(parts))
    return out


def table_names() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text[text.index("## Modules") :]
    names = set()
    packages = tree_modules(packages=True)
    for line in table.splitlines():
        if not line.startswith("| `faceage"):
            continue
        first_cell = line.split("|")[1]
        parent = None
        for name in re.findall(r"`([a-z_.]+)`", first_cell):
            if name.startswith("faceage"):
                names.add(name)
                parent = name if name in packages else name.rsplit(".", 1)[0]
            elif name.startswith(".") and parent:
                names.add(parent + name)
    return names


def test_every_module_is_in_the_table():
    named = table_names()
    packages = tree_modules(packages=True)

    def covered(module: str) -> bool:
        if module in named or any(module.startswith(n + ".") for n in named if n != "faceage"):
            return True
        # a package is documented through its modules
        return module in packages and any(n.startswith(module + ".") for n in named)

    missing = sorted(m for m in tree_modules() if not covered(m))
    assert not missing, f"modules missing from docs/ARCHITECTURE.md's table: {missing}"


def test_every_row_names_a_module_that_exists():
    modules = tree_modules()
    assert not sorted(n for n in table_names() if n not in modules), "rows naming modules that do not exist"
