"""Method registry: names, what is installed, loading by name with clear errors."""

from __future__ import annotations

import pytest

from faceage.errors import FaceageError, ModelFileError
from faceage.methods import ipcgan
from faceage.methods.registry import DEFAULT_METHOD, METHODS, available_methods, load_method, method_names


def test_ipcgan_is_registered_with_its_shipped_file():
    assert DEFAULT_METHOD in method_names() and "ipcgan" in method_names()
    assert METHODS["ipcgan"].shipped == (ipcgan.SHIPPED_NAME,)


def test_nothing_is_available_without_shipped_weights(shipped_dir):
    assert available_methods() == []
    with pytest.raises(ModelFileError, match="'ipcgan' has no weights installed"):
        load_method("ipcgan")


def test_a_weights_file_without_a_manifest_entry_does_not_count(shipped_dir, tiny_weights):
    (shipped_dir / ipcgan.SHIPPED_NAME).write_bytes(tiny_weights.read_bytes())
    assert available_methods() == []


def test_installed_weights_are_available_and_load(installed):
    assert available_methods() == ["ipcgan"]
    method = load_method("ipcgan")
    assert isinstance(method, ipcgan.IPCGANMethod) and method.describe()["weights"] == ipcgan.SHIPPED_NAME
    assert method.supported_ages() == (5.0, 78.0)


def test_a_weights_file_loads_by_path(tiny_weights):
    method = load_method("ipcgan", weights=tiny_weights)
    assert method.generator.cfg.g_channels == 4 and method.grouping.name == "lifespan"


def test_unknown_names_and_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(FaceageError, match=r"unknown aging method 'direktion'; known methods: ipcgan"):
        load_method("direktion")
    with pytest.raises(ModelFileError, match="not found"):
        load_method("ipcgan", weights=tmp_path / "missing.safetensors")


def test_options_reach_the_loader_and_unknown_ones_are_named(tiny_weights):
    assert load_method("ipcgan", weights=tiny_weights, batch="3").batch == 3  # strings, as from --set
    with pytest.raises(FaceageError, match=r"method 'ipcgan' has no option 'truncation' \(its options: batch\)"):
        load_method("ipcgan", weights=tiny_weights, truncation="0.7")
    with pytest.raises(FaceageError, match=r"bad value 'many' for option 'batch'"):
        load_method("ipcgan", weights=tiny_weights, batch="many")
