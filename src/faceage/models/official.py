"""Convert official StyleGAN2 generator weights in the common PyTorch layout into our ``Generator``.

The layout is rosinality/stylegan2-pytorch's ``Generator`` state dict, which e4e, pSp/SAM and HFGI
also use for their decoders (FFHQ 1024 px and 256 px, ``channel_multiplier=2``, 512-d styles,
8 mapping layers). Its keys, for ``log2(resolution) = L``::

    style.{1..8}.weight (512, 512), style.{1..8}.bias (512,)        mapping (style.0 is PixelNorm)
    input.input (1, 512, 4, 4)                                      learned constant
    conv1.conv.weight (1, 512, 512, 3, 3)                           4x4 modulated conv
    conv1.conv.modulation.weight (512, 512), ...modulation.bias (512,)
    conv1.noise.weight (1,), conv1.activate.bias (512,)
    to_rgb1.conv.weight (1, 3, 512, 1, 1), to_rgb1.conv.modulation.*, to_rgb1.bias (1, 3, 1, 1)
    convs.{2j}.*   up-conv of block j (resolution 2**(j+3)), plus convs.{2j}.conv.blur.kernel (4, 4)
    convs.{2j+1}.* second conv of block j
    to_rgbs.{j}.*  its toRGB, plus to_rgbs.{j}.upsample.kernel (4, 4)
    noises.noise_{i} (1, 1, r, r)   fixed noise: i = 0 for 4x4, then two per block

The arithmetic is identical to ours (equalised lr with the same stored scales, modulation bias
init 1, demodulation eps 1e-8, transposed conv + [1,3,3,1] blur x4, skip upsampling by upfirdn2d),
so conversion is renaming plus squeezing the leading 1 of the conv weights. The fixed blur
kernels are checked, not loaded. The mean latent (``latent_avg``, stored beside the state dict by
e4e/pSp) becomes ``w_avg``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from faceage.errors import ModelFileError
from faceage.models.io import load_state_dict_strict
from faceage.models.layers import make_blur_kernel
from faceage.models.stylegan2 import Generator, GeneratorConfig

OFFICIAL_RESOLUTIONS = (256, 512, 1024)


def official_config(resolution: int, channel_multiplier: int = 2) -> GeneratorConfig:
    """Our config equal to rosinality's ``Generator(resolution, 512, 8, channel_multiplier)``.

    Its channels are 512 up to 32 px, then ``16384 * channel_multiplier / res``: the same as
    ``min(channel_base // res, channel_max)`` with base ``16384 * channel_multiplier``, max 512.
    """
    if resolution not in OFFICIAL_RESOLUTIONS:
        raise ValueError(f"official StyleGAN2 resolution must be one of {OFFICIAL_RESOLUTIONS}, got {resolution}")
    return GeneratorConfig(
        resolution=resolution,
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        channel_base=16384 * channel_multiplier,
        channel_max=512,
        lr_mul_mapping=0.01,
        blur_kernel=(1, 3, 3, 1),
    )


def _rename_table(cfg: GeneratorConfig) -> dict[str, str]:
    """official key -> our key, for every tensor that is loaded."""
    table: dict[str, str] = {}
    for i in range(cfg.mapping_layers):
        for p in ("weight", "bias"):
            table[f"style.{i + 1}.{p}"] = f"mapping_network.layers.{i}.{p}"

    def styled(src: str, dst: str) -> None:
        table[f"{src}.conv.weight"] = f"{dst}.conv.weight"
        table[f"{src}.conv.modulation.weight"] = f"{dst}.conv.modulation.weight"
        table[f"{src}.conv.modulation.bias"] = f"{dst}.conv.modulation.bias"
        table[f"{src}.noise.weight"] = f"{dst}.noise_strength"
        table[f"{src}.activate.bias"] = f"{dst}.bias"

    def torgb(src: str, dst: str) -> None:
        table[f"{src}.conv.weight"] = f"{dst}.conv.weight"
        table[f"{src}.conv.modulation.weight"] = f"{dst}.conv.modulation.weight"
        table[f"{src}.conv.modulation.bias"] = f"{dst}.conv.modulation.bias"
        table[f"{src}.bias"] = f"{dst}.bias"

    table["input.input"] = "blocks.b4.const"
    styled("conv1", "blocks.b4.conv1")
    torgb("to_rgb1", "blocks.b4.torgb")
    table["noises.noise_0"] = "blocks.b4.conv1.noise_const"
    for j, res in enumerate(cfg.resolutions):
        styled(f"convs.{2 * j}", f"blocks.b{res}.conv0")
        styled(f"convs.{2 * j + 1}", f"blocks.b{res}.conv1")
        torgb(f"to_rgbs.{j}", f"blocks.b{res}.torgb")
        table[f"noises.noise_{2 * j + 1}"] = f"blocks.b{res}.conv0.noise_const"
        table[f"noises.noise_{2 * j + 2}"] = f"blocks.b{res}.conv1.noise_const"
    return table


def _fixed_kernels(cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Official buffers that hold the (constant) blur kernels: checked against ours, not loaded."""
    k = make_blur_kernel(cfg.blur_kernel) * 4.0
    out = {}
    for j in range(len(cfg.resolutions)):
        out[f"convs.{2 * j}.conv.blur.kernel"] = k
        out[f"to_rgbs.{j}.upsample.kernel"] = k
    return out


def extract_official_state(checkpoint: Mapping) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(generator state dict, latent_avg or None) from a loaded checkpoint dict.

    Accepts a bare rosinality generator state dict, a rosinality training checkpoint (``g_ema``),
    or an e4e/pSp/HFGI checkpoint (``state_dict`` with ``decoder.``-prefixed keys and ``latent_avg``).
    """
    latent_avg = checkpoint.get("latent_avg")
    if "g_ema" in checkpoint:
        return dict(checkpoint["g_ema"]), latent_avg
    if "state_dict" in checkpoint:
        sd = checkpoint["state_dict"]
        dec = {k[len("decoder.") :]: v for k, v in sd.items() if k.startswith("decoder.")}
        if not dec:
            raise ModelFileError("checkpoint 'state_dict' has no 'decoder.' generator weights")
        return dec, latent_avg
    sd = {k: v for k, v in checkpoint.items() if k != "latent_avg"}
    return sd, latent_avg


def load_official_stylegan2(
    state_dict: Mapping[str, torch.Tensor],
    resolution: int,
    latent_avg: torch.Tensor | None = None,
    channel_multiplier: int = 2,
) -> Generator:
    """Build our ``Generator`` from a rosinality-layout state dict, strictly.

    Every key must be consumed and every shape must match (else ``ModelFileError``). A
    ``latent_avg`` key inside ``state_dict`` is used when the argument is not given; it may be
    (512,), (1, 512) or (n, 512) with equal rows. Without one, ``w_avg`` stays zero (truncation is
    then meaningless until it is estimated, e.g. as the mean of mapped random z).
    """
    cfg = official_config(resolution, channel_multiplier)
    state = dict(state_dict)
    if "latent_avg" in state:
        inner = state.pop("latent_avg")
        latent_avg = inner if latent_avg is None else latent_avg
    table = _rename_table(cfg)
    kernels = _fixed_kernels(cfg)
    unexpected = state.keys() - table.keys() - kernels.keys()
    missing = (table.keys() | kernels.keys()) - state.keys()
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(sorted(missing)[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(
                f"unexpected keys: {', '.join(sorted(unexpected)[:5])}" + (" ..." if len(unexpected) > 5 else "")
            )
        raise ModelFileError(f"not a {resolution} px StyleGAN2 generator (rosinality layout): {'; '.join(parts)}")
    for key, expected in kernels.items():
        got = state[key]
        if tuple(got.shape) != tuple(expected.shape) or not torch.allclose(got.float(), expected, atol=1e-6):
            raise ModelFileError(f"official buffer {key} is not the [1,3,3,1] blur kernel this converter assumes")

    gen = Generator(cfg)
    ours = gen.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for src, dst in table.items():
        t = state[src]
        want = ours[dst].shape
        if src.endswith("conv.weight") and t.ndim == 5 and t.shape[0] == 1:
            t = t[0]  # (1, out, in, k, k) -> (out, in, k, k)
        elif src.endswith("bias") and t.ndim == 4:
            t = t.reshape(-1)  # toRGB bias (1, 3, 1, 1) -> (3,)
        if tuple(t.shape) != tuple(want):
            raise ModelFileError(
                f"official key {src} has shape {tuple(state[src].shape)}; expected {tuple(want)} for {resolution} px"
            )
        converted[dst] = t
    converted["w_avg"] = _latent_avg(latent_avg, cfg.w_dim)
    load_state_dict_strict(gen, converted, f"official StyleGAN2 {resolution} px state dict")
    return gen.eval()


def _latent_avg(latent_avg: torch.Tensor | None, w_dim: int) -> torch.Tensor:
    if latent_avg is None:
        return torch.zeros(w_dim)
    t = torch.as_tensor(latent_avg).detach().float().reshape(-1, w_dim) if latent_avg.numel() % w_dim == 0 else None
    if t is None:
        raise ModelFileError(f"latent_avg has shape {tuple(latent_avg.shape)}; expected (..., {w_dim})")
    if not torch.allclose(t, t[:1].expand_as(t), atol=1e-5):
        raise ModelFileError("latent_avg has different rows per W+ entry; a single mean w is expected")
    return t[0].clone()
