"""Method registry: names, what is installed, loading by name with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceage.errors import FaceageError, ModelFileError
from faceage.methods import ipcgan
from faceage.methods.registry import DEFAULT_METHOD, METHODS, available_methods, load_method, method_names


def test_ipcgan_is_registered_with_its_shipped_file():
    assert "ipcgan" in method_names()
    assert METHODS["ipcgan"].shipped == (ipcgan.SHIPPED_NAME,)


def test_experimental_methods_are_labelled_and_never_the_default():
    from faceage.methods.registry import method_help

    assert METHODS["ipcgan"].experimental and "[experimental]" in METHODS["ipcgan"].label()
    assert DEFAULT_METHOD in METHODS and not METHODS[DEFAULT_METHOD].experimental
    assert "experimental" not in METHODS[DEFAULT_METHOD].label()
    assert f"default {DEFAULT_METHOD}" in method_help() and "ipcgan: " in method_help()


def test_nothing_is_available_without_shipped_weights(shipped_dir):
    assert "ipcgan" not in available_methods()
    with pytest.raises(ModelFileError, match="'ipcgan' has no weights installed"):
        load_method("ipcgan")


def test_a_weights_file_without_a_manifest_entry_does_not_count(shipped_dir, tiny_weights):
    (shipped_dir / ipcgan.SHIPPED_NAME).write_bytes(tiny_weights.read_bytes())
    assert "ipcgan" not in available_methods()


def test_installed_weights_are_available_and_load(installed):
    assert "ipcgan" in available_methods()
    method = load_method("ipcgan")
    assert isinstance(method, ipcgan.IPCGANMethod) and method.describe()["weights"] == ipcgan.SHIPPED_NAME
    assert method.supported_ages() == (5.0, 78.0)


def test_a_weights_file_loads_by_path(tiny_weights):
    method = load_method("ipcgan", weights=tiny_weights)
    assert method.generator.cfg.g_channels == 4 and method.grouping.name == "lifespan"


def test_unknown_names_and_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(FaceageError, match=r"unknown aging method 'direktion'; known methods: .*ipcgan"):
        load_method("direktion")
    with pytest.raises(ModelFileError, match="not found"):
        load_method("ipcgan", weights=tmp_path / "missing.safetensors")


def test_every_method_says_what_it_does_and_cites_its_paper():
    for name, spec in METHODS.items():
        assert spec.summary and spec.paper, f"method {name!r}: fill in summary and paper in METHODS"
        assert "seed" not in spec.summary.lower() and "patent" not in spec.summary.lower()


def _readme_method_table() -> dict[str, tuple[str, str]]:
    """``--method`` rows of the README's "## Methods" table: name -> (what it does, paper)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Methods\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3 and cells[0] != "`--method`":
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_the_readme_method_table_is_the_registry():
    table = _readme_method_table()
    assert sorted(table) == sorted(METHODS), "README.md's method table and faceage.methods.registry.METHODS differ"
    for name, (summary, paper) in table.items():
        assert (summary, paper) == (METHODS[name].summary, METHODS[name].paper), f"README row of {name!r}"


def test_the_command_line_offers_exactly_the_registered_methods(capsys):
    from cli_helpers import run_cli

    code, _, err = run_cli(capsys, "age", "photo.jpg", "--to", "60", "--method", "direction")
    assert code == 2
    assert "Invalid value for '--method': 'direction' is not" in err and all(repr(name) in err for name in METHODS)


def test_options_reach_the_loader_and_unknown_ones_are_named(tiny_weights):
    assert load_method("ipcgan", weights=tiny_weights, batch="3").batch == 3  # strings, as from --set
    with pytest.raises(FaceageError, match=r"method 'ipcgan' has no option 'truncation' \(its options: batch\)"):
        load_method("ipcgan", weights=tiny_weights, truncation="0.7")
    with pytest.raises(FaceageError, match=r"bad value 'many' for option 'batch'"):
        load_method("ipcgan", weights=tiny_weights, batch="many")


def test_each_methods_options_are_one_table():
    """``MethodSpec.options`` is where an option lives: its converter (``known``), the ``--set`` help
    and the web page's controls all come from it."""
    from faceage.methods.registry import METHODS, Option, options_help

    for name, spec in METHODS.items():
        assert set(spec.known()) == {option.name for option in spec.options}, name
        for option in spec.options:
            assert option.kind in ("number", "integer", "flag") and option.help, (name, option.name)
            assert option.convert(option.default) == option.default  # the default is a value it accepts
    strength = Option("strength", "number", 1.0, "scales every change", True, 0.0, 3.0)
    assert strength.convert("1.5") == 1.5 and strength.to_dict()["web"] is True
    with pytest.raises(ValueError, match="must be <= 3"):
        strength.convert("4")
    assert Option("hair", "flag", True, "grey the hair").convert("off") is False
    with pytest.raises(ValueError, match="expected on/off"):
        Option("hair", "flag", True, "grey the hair").convert("maybe")
    assert "prototype: strength=1 (" in options_help() and "ipcgan: batch=16 (" in options_help()
    assert [o.name for o in METHODS["prototype"].options if o.web] == ["strength", "hair"]
