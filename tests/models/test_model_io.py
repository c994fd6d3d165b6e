"""Save/load through config.json + model.safetensors: identical outputs, strict key and shape checks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from faceage.errors import ModelFileError
from faceage.models.io import CONFIG_NAME, WEIGHTS_NAME, load_model, save_model
from faceage.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

TINY_G = GeneratorConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
TINY_D = DiscriminatorConfig(resolution=16, channel_base=128, channel_max=16, c_dim=2)


@pytest.fixture()
def saved_generator(tmp_path):
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    with torch.no_grad():
        g.w_avg.normal_()
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    save_model(g, tmp_path / "g")
    return g, tmp_path / "g"


def test_generator_round_trip_gives_identical_outputs(saved_generator):
    g, folder = saved_generator
    assert (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
    assert not list(folder.glob("*.tmp"))
    loaded = load_model(folder, expect=Generator)
    assert loaded.cfg == g.cfg
    z = torch.randn(2, TINY_G.z_dim)
    with torch.no_grad():
        for res, ratio in ((16, 1.0), (8, 0.25)):
            a = g(z, resolution=res, ratio=ratio, truncation=0.7, noise_mode="const")
            b = loaded(z, resolution=res, ratio=ratio, truncation=0.7, noise_mode="const")
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_discriminator_round_trip(tmp_path):
    torch.manual_seed(0)
    d = Discriminator(TINY_D)
    save_model(d, tmp_path / "d")
    loaded = load_model(tmp_path / "d")
    x, c = torch.randn(3, 3, 8, 8), torch.eye(2)[[0, 1, 1]]
    torch.testing.assert_close(d(x, c), loaded(x, c), rtol=0, atol=0)


def test_float16_save_loads_back_as_float32(tmp_path):
    g = Generator(TINY_G)
    save_model(g, tmp_path / "g16", dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in load_file(str(tmp_path / "g16" / WEIGHTS_NAME)).values())
    loaded = load_model(tmp_path / "g16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def _edit_weights(folder, edit):
    tensors = load_file(str(folder / WEIGHTS_NAME))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS_NAME))


def test_missing_key_raises(saved_generator):
    _, folder = saved_generator
    _edit_weights(folder, lambda t: t.pop("blocks.b8.conv1.bias"))
    with pytest.raises(ModelFileError, match=r"missing keys: blocks\.b8\.conv1\.bias"):
        load_model(folder)


def test_unexpected_key_raises(saved_generator):
    _, folder = saved_generator
    _edit_weights(folder, lambda t: t.__setitem__("blocks.b8.extra", torch.zeros(2)))
    with pytest.raises(ModelFileError, match=r"unexpected keys: blocks\.b8\.extra"):
        load_model(folder)


def test_shape_mismatch_raises(saved_generator):
    _, folder = saved_generator
    _edit_weights(folder, lambda t: t.__setitem__("blocks.b8.conv1.bias", torch.zeros(3)))
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_model(folder)


def test_config_problems_raise_model_file_error(saved_generator):
    _, folder = saved_generator
    with pytest.raises(ModelFileError, match="holds a Generator"):
        load_model(folder, expect=Discriminator)
    meta = json.loads((folder / CONFIG_NAME).read_text())
    meta["config"]["resolution"] = 32  # weights no longer match the config
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="missing keys"):
        load_model(folder)
    meta["class"] = "Encoder"
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="unknown class"):
        load_model(folder)
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelFileError, match="unreadable"):
        load_model(folder)
    (folder / WEIGHTS_NAME).unlink()
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_model(folder)


def test_truncated_weights_raise(saved_generator):
    _, folder = saved_generator
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="unreadable"):
        load_model(folder)
