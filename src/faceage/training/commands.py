"""``faceage train``: the GAN trainer on the command line, and the group every trainer joins.

Multi-GPU: ``torchrun --nproc_per_node=N -m faceage.cli train gan ...`` (``--batch`` is per GPU).
Registered under ``faceage train``; under torchrun use ``-m faceage.cli train gan ...``.

Heavy modules (torch, the trainer) are imported inside the commands so ``faceage --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceage.cli_options import CONTEXT_SETTINGS as _CTX
from faceage.cli_options import data_option, device_option, max_minutes_option, out_folder_option, resume_option
from faceage.cli_options import float_list as _float_list
from faceage.cli_options import int_list as _int_list
from faceage.errors import FaceageError
from faceage.training.age_commands import age_command
from faceage.training.ipcgan_commands import ipcgan_command
from faceage.training.prototype_commands import prototypes_command
from faceage.training.refiner_commands import refiner_command
from faceage.training.student_commands import student_command

_DIR = click.Path(file_okay=False, path_type=Path)


@click.group("train", context_settings=_CTX)
def train() -> None:
    """Train faceage's own networks (resumable; multi-GPU with torchrun)."""


# CLI option name -> GANConfig field ("augment.X" = AugmentConfig field); None = run option only.
_CONFIG_FIELDS = {
    "resolution": "resolution",
    "channel_max": "channel_max",
    "sub_res": "sub_resolutions",
    "ratios": "ratios",
    "cons_weight": "cons_weight",
    "batch": "batch",
    "g_lr": "g_lr",
    "d_lr": "d_lr",
    "gamma": "r1_gamma",
    "r1_interval": "r1_interval",
    "pl_weight": "pl_weight",
    "mixing": "style_mixing",
    "ema_kimg": "ema_kimg",
    "mirror": "mirror",
    "seed": "seed",
    "amp": "amp",
    "channels_last": "channels_last",
    "tf32": "tf32",
    "compile_mode": "compile",
    "aug": "augment.ops",
    "ada_target": "augment.target",
    "ada_kimg": "augment.speed_kimg",
    "ada_p_max": "augment.p_max",
}


@train.command("gan")
@data_option("Prepared shard folder (manifest.json + faces-*.tar).", must_exist=False)
@out_folder_option("Run folder: checkpoints, metrics.jsonl, options, sample grids.")
@resume_option(
    "Alone or auto: the newest checkpoint in --out if any; or a checkpoint .json, a run folder, or a "
    "model folder (weights only: G_ema; D and optimizers restart)."
)
@click.option(
    "--kimg", type=click.FloatRange(min=0), default=1000.0, help="Stop at this many thousand real images (total)."
)
@max_minutes_option
@click.option(
    "--max-steps", type=click.IntRange(min=0), default=None, help="Stop after this many iterations (timing runs)."
)
@click.option("--batch", type=click.IntRange(2, 4096), default=64, help="Images per GPU per step.")
@device_option()
@click.option(
    "--compile",
    "compile_mode",
    type=click.Choice(["off", "d", "all"]),
    default="off",
    help="torch.compile: d = discriminator only (seconds); all = also G synthesis (minutes of compile).",
)
@click.option(
    "--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto", help="bf16 autocast (auto: on CUDA)."
)
@click.option("--channels-last/--no-channels-last", default=True, help="channels_last memory format for D.")
@click.option("--tf32/--no-tf32", default=True)
@click.option("--workers", type=click.IntRange(0, 64), default=6, help="DataLoader processes decoding JPEGs (per GPU).")
@click.option("--seed", type=int, default=0)
@click.option(
    "--resolution", type=click.Choice(["32", "64", "128", "256"]), default="128", callback=lambda c, p, v: int(v)
)
@click.option("--channel-max", type=click.IntRange(8, 1024), default=256)
@click.option(
    "--sub-res",
    type=str,
    default="32,64,128",
    callback=lambda c, p, v: _int_list(v),
    help="Sub-generator output resolutions sampled per step.",
)
@click.option(
    "--ratios",
    type=str,
    default="0.25,0.5,0.75,1",
    callback=lambda c, p, v: _float_list(v),
    help="Sub-generator channel ratios sampled per step.",
)
@click.option(
    "--cons-weight", type=click.FloatRange(min=0), default=20.0, help="Weight of the sub-generator consistency MSE."
)
@click.option("--gamma", type=click.FloatRange(min=0), default=0.25, help="R1 weight at full resolution.")
@click.option("--r1-interval", type=click.IntRange(min=1), default=16)
@click.option(
    "--pl-weight", type=click.FloatRange(min=0), default=0.0, help="Path-length regularisation weight (0 = off)."
)
@click.option("--g-lr", type=click.FloatRange(min=0), default=0.0025)
@click.option("--d-lr", type=click.FloatRange(min=0), default=0.0025)
@click.option("--mixing", type=click.FloatRange(0, 1), default=0.9, help="Style-mixing probability.")
@click.option("--ema-kimg", type=click.FloatRange(min=0), default=20.0, help="EMA half-life of G in kimg.")
@click.option("--mirror/--no-mirror", default=True, help="Add x-flipped copies of the training faces.")
@click.option(
    "--aug",
    type=str,
    default="xflip,translate,brightness,contrast,saturation,cutout",
    callback=lambda c, p, v: tuple(t for t in v.split(",") if t.strip() and v != "none"),
    help="ADA operations (comma-separated) or 'none'.",
)
@click.option("--ada-target", type=click.FloatRange(0, 1), default=0.6)
@click.option("--ada-kimg", type=click.FloatRange(min=1), default=100.0, help="kimg for ADA p to move by 1.")
@click.option("--ada-p-max", type=click.FloatRange(0, 1), default=1.0)
@click.option("--split", default="train", help="Data split to train on.")
@click.option("--log-every", type=click.IntRange(min=1), default=50, help="Steps between metrics lines.")
@click.option(
    "--ckpt-kimg",
    type=click.FloatRange(min=0),
    default=50.0,
    help="Checkpoint every this many kimg (0 = only at the end).",
)
@click.option("--ckpt-minutes", type=click.FloatRange(min=0.1), default=4.0, help="...and at least this often.")
@click.option("--keep-ckpts", type=click.IntRange(min=1), default=2)
@click.option("--fd-kimg", type=click.FloatRange(min=0), default=50.0, help="Quick FD every this many kimg (0 = off).")
@click.option("--fd-n", type=click.IntRange(min=10), default=2000, help="Samples for the quick FD.")
@click.option(
    "--compact-to",
    type=_DIR,
    default=None,
    help="At the end also write a compact checkpoint here (fp16 networks, no Adam state, ~52 MiB "
    "at 128 px: small enough to bring back from a GPU machine and upload again).",
)
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def train_gan(**kw) -> None:
    """Train the StyleGAN2 generator with sampled sub-generators and their consistency loss."""
    import time

    started = time.monotonic()
    from click.core import ParameterSource

    from faceage.training.gan import GANConfig, RunOptions
    from faceage.training.gan import train as run

    ctx = click.get_current_context()
    explicit = {}
    aug_kw = {}
    for opt, fieldname in _CONFIG_FIELDS.items():
        if fieldname.startswith("augment."):
            aug_kw[fieldname.split(".", 1)[1]] = kw[opt]
        if ctx.get_parameter_source(opt) == ParameterSource.COMMANDLINE:
            explicit[fieldname] = kw[opt]
    flat = {f: kw[o] for o, f in _CONFIG_FIELDS.items() if not f.startswith("augment.")}
    if any(r > kw["resolution"] for r in kw["sub_res"]):
        raise click.BadParameter(
            f"sub resolutions {kw['sub_res']} exceed --resolution {kw['resolution']}", param_hint="--sub-res"
        )
    if kw["resume"] is not None and kw["resume"] != "auto" and not Path(kw["resume"]).exists():
        raise click.BadParameter(f"{kw['resume']} does not exist", param_hint="--resume")
    try:
        from faceage.training.augment import AugmentConfig

        cfg = GANConfig(**flat, augment=AugmentConfig(**aug_kw))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    opts = RunOptions(
        data=kw["data"],
        out=kw["out"],
        kimg=kw["kimg"],
        max_minutes=kw["max_minutes"],
        max_steps=kw["max_steps"],
        device=kw["device"],
        split=kw["split"],
        workers=kw["workers"],
        log_every=kw["log_every"],
        ckpt_kimg=kw["ckpt_kimg"],
        ckpt_minutes=kw["ckpt_minutes"],
        keep_ckpts=kw["keep_ckpts"],
        fd_kimg=kw["fd_kimg"],
        fd_n=kw["fd_n"],
        compact_to=kw["compact_to"],
        started=started,
    )
    if kw["dry_run"]:
        click.echo(
            json.dumps(
                {
                    "config": cfg.to_dict(),
                    "explicit": {k: list(v) if isinstance(v, tuple) else v for k, v in explicit.items()},
                    "resume": kw["resume"],
                    "run": {k: str(v) for k, v in vars(opts).items()},
                },
                indent=2,
            )
        )
        return
    if not kw["data"].is_dir():
        raise FaceageError(f"data folder not found: {kw['data']}")
    last = run(cfg, opts, resume=kw["resume"], explicit=explicit, echo=click.echo)
    if last is not None:
        click.echo(f"last checkpoint: {last}")


@train.command("export-gan")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@out_folder_option("Model folder to write (config.json + model.safetensors).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16")
def export_gan(checkpoint: Path, out: Path, dtype: str) -> None:
    """Write a training checkpoint's G_ema as a shippable model folder (fp16 by default)."""
    import torch

    from faceage.training.checkpoint_format import resolve_checkpoint
    from faceage.training.gan import export_ema

    checkpoint = resolve_checkpoint(checkpoint)
    folder = export_ema(checkpoint, out, dtype=getattr(torch, dtype))
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    click.echo(f"exported G_ema of {checkpoint.name} to {folder} ({size:.1f} MiB)")


@train.command("compact-gan")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@out_folder_option("Folder for the compact checkpoint (index + parts).")
@click.option("--with-optimizer", is_flag=True, help="Keep Adam moments (in bfloat16); otherwise they are dropped.")
def compact_gan(checkpoint: Path, out: Path, with_optimizer: bool) -> None:
    """Shrink a checkpoint for upload (fp16 networks; approximate resume with --resume OUT)."""
    from faceage.training.checkpoint_format import checkpoint_files, resolve_checkpoint
    from faceage.training.gan import compact_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)
    index = compact_checkpoint(checkpoint, out, keep_optimizer=with_optimizer)
    size = sum(f.stat().st_size for f in checkpoint_files(index)) / 2**20
    click.echo(f"compact checkpoint {index} ({size:.1f} MiB in {len(checkpoint_files(index))} files)")


# the trainers' own commands; a new trainer is one line here
train.add_command(age_command)
train.add_command(ipcgan_command)
train.add_command(refiner_command)
train.add_command(student_command)
train.add_command(prototypes_command)
