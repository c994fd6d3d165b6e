"""Official StyleGAN2 (rosinality layout, as used by e4e/SAM/HFGI) -> our Generator, strictly.

The reference layout below is written from the documented architecture of rosinality's
``Generator(size, style_dim=512, n_mlp=8, channel_multiplier=2)`` independently of the converter,
so the test does not just check the converter against itself.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceage.errors import ModelFileError
from faceage.models.official import extract_official_state, load_official_stylegan2

SQRT2 = math.sqrt(2.0)


def rosinality_layout(size: int, channel_multiplier: int = 2, style_dim: int = 512, n_mlp: int = 8) -> dict:
    """key -> shape of a rosinality stylegan2-pytorch generator state dict."""
    cm = channel_multiplier
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    layout = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm (no tensors)
        layout[f"style.{i}.weight"] = (style_dim, style_dim)
        layout[f"style.{i}.bias"] = (style_dim,)

    def styled_conv(prefix, cin, cout, up):
        layout[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        layout[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        layout[f"{prefix}.conv.modulation.bias"] = (cin,)
        if up:
            layout[f"{prefix}.conv.blur.kernel"] = (4, 4)
        layout[f"{prefix}.noise.weight"] = (1,)
        layout[f"{prefix}.activate.bias"] = (cout,)

    def to_rgb(prefix, cin, up):
        layout[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        layout[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        layout[f"{prefix}.conv.modulation.bias"] = (cin,)
        layout[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            layout[f"{prefix}.upsample.kernel"] = (4, 4)

    layout["input.input"] = (1, ch[4], 4, 4)
    styled_conv("conv1", ch[4], ch[4], up=False)
    to_rgb("to_rgb1", ch[4], up=False)
    log_size = int(math.log2(size))
    for layer in range((log_size - 2) * 2 + 1):
        r = 2 ** ((layer + 5) // 2)
        layout[f"noises.noise_{layer}"] = (1, 1, r, r)
    cin = ch[4]
    for j, i in enumerate(range(3, log_size + 1)):
        cout = ch[2**i]
        styled_conv(f"convs.{2 * j}", cin, cout, up=True)
        styled_conv(f"convs.{2 * j + 1}", cout, cout, up=False)
        to_rgb(f"to_rgbs.{j}", cout, up=True)
        cin = cout
    return layout


BLUR_X4 = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR_X4 = BLUR_X4[:, None] * BLUR_X4[None, :] / 64.0 * 4.0


def random_official_state(size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in rosinality_layout(size).items():
        if key.endswith("kernel"):
            state[key] = BLUR_X4.clone()  # constant buffers in every real checkpoint
        elif key.endswith("modulation.bias"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith(("bias", "noise.weight")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


@pytest.fixture(scope="module")
def official256():
    state = random_official_state(256)
    latent_avg = torch.randn(1, 512)
    return state, latent_avg, load_official_stylegan2(state, 256, latent_avg=latent_avg)


def test_layout_sizes_match_the_published_latent_counts():
    # n_latent = 2*log2(size) - 2: 14 at 256 px, 18 at 1024 px; 17 / 25 noise buffers
    assert sum(k.startswith("noises.") for k in rosinality_layout(256)) == 13
    assert sum(k.startswith("noises.") for k in rosinality_layout(1024)) == 17


def test_256_every_key_consumed_and_output_finite(official256):
    state, latent_avg, gen = official256
    assert gen.num_ws == 14 and gen.cfg.resolution == 256
    assert gen.count_parameters() == sum(v.numel() for k, v in state.items() if "kernel" not in k and "noises" not in k)
    torch.testing.assert_close(gen.w_avg, latent_avg[0])
    # every official tensor landed somewhere: total element count of loaded tensors matches
    ours = gen.state_dict()
    assert sum(v.numel() for v in ours.values()) == sum(v.numel() for k, v in state.items() if "kernel" not in k) + 512
    with torch.no_grad():
        img = gen(torch.randn(1, 512), truncation=0.7, noise_mode="const")
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


def test_1024_layout_converts():
    gen = load_official_stylegan2(random_official_state(1024, seed=1), 1024)
    assert gen.num_ws == 18 and gen.cfg.channels(1024) == 32 and gen.cfg.channels(64) == 512
    assert float(gen.w_avg.abs().sum()) == 0.0  # no latent_avg given


def test_missing_extra_and_misshapen_keys_raise():
    state = random_official_state(256)
    broken = dict(state)
    broken.pop("convs.3.noise.weight")
    with pytest.raises(ModelFileError, match=r"missing keys: convs\.3\.noise\.weight"):
        load_official_stylegan2(broken, 256)
    with pytest.raises(ModelFileError, match=r"unexpected keys: extra"):
        load_official_stylegan2({**state, "extra": torch.zeros(1)}, 256)
    wrong = {**state, "to_rgbs.2.conv.weight": torch.zeros(1, 3, 7, 1, 1)}
    with pytest.raises(ModelFileError, match="to_rgbs.2.conv.weight"):
        load_official_stylegan2(wrong, 256)
    # a 1024 px state dict is not a 256 px one
    with pytest.raises(ModelFileError, match="unexpected keys"):
        load_official_stylegan2(random_official_state(1024), 256)
    with pytest.raises(ModelFileError, match="blur kernel"):
        load_official_stylegan2({**state, "convs.0.conv.blur.kernel": torch.ones(4, 4)}, 256)


def test_checkpoint_wrappers_are_unwrapped():
    state = {"a": torch.zeros(1)}
    assert extract_official_state({"g_ema": state, "latent_avg": torch.ones(512)})[0] == state
    sd, avg = extract_official_state({"state_dict": {"decoder.a": state["a"], "encoder.b": 1}, "latent_avg": 3})
    assert list(sd) == ["a"] and avg == 3


def _pixel_norm(z):
    return z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)


def test_mapping_matches_the_formula(official256):
    state, _, gen = official256
    z = torch.randn(2, 512)
    x = _pixel_norm(z)
    for i in range(1, 9):
        x = x @ (state[f"style.{i}.weight"] * 0.01 / math.sqrt(512)).t() + state[f"style.{i}.bias"] * 0.01
        x = F.leaky_relu(x, 0.2) * SQRT2
    with torch.no_grad():
        torch.testing.assert_close(gen.eval().mapping(z), x, rtol=1e-4, atol=1e-4)


def _styles(state, prefix, w):
    cin = state[f"{prefix}.conv.modulation.weight"].shape[0]
    s = w @ (state[f"{prefix}.conv.modulation.weight"] / math.sqrt(512)).t() + state[f"{prefix}.conv.modulation.bias"]
    return s, cin


def test_modulated_conv_3x3_matches_the_formula(official256):
    """out[b,o,y,x] = d[b,o] * sum_{i,ky,kx} W[o,i,ky,kx]/sqrt(9 C_in) * s[b,i] * x[b,i,y+ky-1,x+kx-1]."""
    state, _, gen = official256
    torch.manual_seed(0)
    b = 2
    x = torch.randn(b, 512, 4, 4)
    w = torch.randn(b, 512)
    s, cin = _styles(state, "conv1", w)
    weight = state["conv1.conv.weight"][0] / math.sqrt(cin * 9)  # (O, I, 3, 3)
    mod = weight[None] * s[:, None, :, None, None]  # (B, O, I, 3, 3)
    d = torch.rsqrt(mod.square().sum(dim=(2, 3, 4)) + 1e-8)  # (B, O)
    xp = F.pad(x, (1, 1, 1, 1))
    expected = torch.zeros(b, 512, 4, 4)
    for ky in range(3):
        for kx in range(3):
            expected += torch.einsum("boi,bihw->bohw", mod[..., ky, kx], xp[:, :, ky : ky + 4, kx : kx + 4])
    expected *= d[:, :, None, None]
    layer = gen.blocks["b4"].conv1.conv
    with torch.no_grad():
        for fused in (True, False):
            torch.testing.assert_close(layer(x, w, fused=fused), expected, rtol=1e-4, atol=1e-4)
        # sliced: first 100 in / 40 out channels equal the same formula on the sub-weights
        s_sub = s[:, :100]
        mod_sub = weight[:40, :100][None] * s_sub[:, None, :, None, None]
        d_sub = torch.rsqrt(mod_sub.square().sum(dim=(2, 3, 4)) + 1e-8)
        exp_sub = torch.zeros(b, 40, 4, 4)
        for ky in range(3):
            for kx in range(3):
                exp_sub += torch.einsum("boi,bihw->bohw", mod_sub[..., ky, kx], xp[:, :100, ky : ky + 4, kx : kx + 4])
        exp_sub *= d_sub[:, :, None, None]
        torch.testing.assert_close(layer(x[:, :100], w, 40), exp_sub, rtol=1e-4, atol=1e-4)


def test_upsampling_modulated_conv_matches_the_formula(official256):
    """Transposed stride-2 conv (scatter each input pixel's 3x3 response), then [1,3,3,1]x4 blur, pad 1."""
    state, _, gen = official256
    torch.manual_seed(1)
    b, h = 1, 4
    x = torch.randn(b, 512, h, h)
    w = torch.randn(b, 512)
    s, cin = _styles(state, "convs.0", w)
    weight = state["convs.0.conv.weight"][0] / math.sqrt(cin * 9)
    mod = weight[None] * s[:, None, :, None, None]
    d = torch.rsqrt(mod.square().sum(dim=(2, 3, 4)) + 1e-8)
    mod = mod * d[:, :, None, None, None]
    canvas = torch.zeros(b, 512, 2 * h + 1, 2 * h + 1)
    for ky in range(3):
        for kx in range(3):
            canvas[:, :, ky : ky + 2 * h : 2, kx : kx + 2 * h : 2] += torch.einsum(
                "boi,bihw->bohw", mod[..., ky, kx], x
            )
    padded = F.pad(canvas, (1, 1, 1, 1))
    expected = torch.zeros(b, 512, 2 * h, 2 * h)
    for ky in range(4):
        for kx in range(4):
            expected += BLUR_X4[3 - ky, 3 - kx] * padded[:, :, ky : ky + 2 * h, kx : kx + 2 * h]
    with torch.no_grad():
        for fused in (True, False):
            got = gen.blocks["b8"].conv0.conv(x, w, fused=fused)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
