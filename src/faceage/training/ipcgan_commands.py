"""``faceage train ipcgan``: train the IPCGAN conditional generator on prepared face shards."""

from __future__ import annotations

import click

from faceage.cli_options import (
    CONTEXT_SETTINGS,
    data_option,
    device_option,
    keep_checkpoint_on_interrupt,
    max_minutes_option,
    out_folder_option,
    resume_option,
)


@click.command("ipcgan", context_settings=CONTEXT_SETTINGS)
@data_option()
@out_folder_option("Run folder: options, metrics, checkpoints, samples, exported EMA generator.")
@click.option(
    "--grouping",
    type=click.Choice(["lifespan", "ipcgan5"]),
    default="lifespan",
    help="Age groups: decades 0-9 .. 70+ (lifespan) or the IPCGAN paper's five adult groups (ipcgan5).",
)
@click.option("--steps", type=click.IntRange(1), default=20000, help="Total optimisation steps of the run.")
@click.option("--batch", type=click.IntRange(2, 4096), default=16, help="Faces per step.")
@click.option("--lr-g", type=click.FloatRange(min=0, min_open=True), default=2e-4, help="Generator Adam learning rate.")
@click.option(
    "--lr-d", type=click.FloatRange(min=0, min_open=True), default=2e-4, help="Discriminator Adam learning rate."
)
@click.option("--lambda-gan", type=click.FloatRange(min=0), default=1.0, help="lambda_1: LSGAN generator term.")
@click.option("--lambda-id", type=click.FloatRange(min=0), default=1.0, help="lambda_2: AlexNet conv5 identity term.")
@click.option("--lambda-age", type=click.FloatRange(min=0), default=0.5, help="lambda_3: age-group softmax term.")
@click.option(
    "--g-channels",
    type=click.IntRange(1),
    default=16,
    help="Generator width (x2, x4 after downsampling); the paper uses 32.",
)
@click.option("--g-blocks", type=click.IntRange(1), default=6, help="Generator residual blocks.")
@click.option("--d-channels", type=click.IntRange(1), default=32, help="Discriminator width; the paper uses 64.")
@click.option(
    "--d-type",
    type=click.Choice(["projected", "patch"]),
    default="projected",
    help="Discriminator: on frozen MobileNetV2 features (Projected GAN) or the pixel PatchGAN.",
)
@click.option(
    "--head",
    type=click.Choice(["luma", "rgb"]),
    default="luma",
    help="Generator output: full-resolution luma + smooth colour gain, or free RGB.",
)
@click.option(
    "--diffaugment/--no-diffaugment",
    default=True,
    help="Translation, colour and cutout on every image the discriminator sees (DiffAugment).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0)
@device_option()
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=2,
    help="torch CPU threads. On a shared CPU also set OMP_WAIT_POLICY=PASSIVE.",
)
@max_minutes_option
@click.option("--checkpoint-every", type=click.IntRange(1), default=200)
@click.option("--sample-every", type=click.IntRange(1), default=500)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start G from exported weights (e.g. the shipped ones) when no full checkpoint is left.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, hidden=True)
@resume_option()
def ipcgan_command(
    data,
    out,
    grouping,
    steps,
    batch,
    lr_g,
    lr_d,
    lambda_gan,
    lambda_id,
    lambda_age,
    g_channels,
    g_blocks,
    d_channels,
    d_type,
    head,
    diffaugment,
    seed,
    device,
    threads,
    max_minutes,
    checkpoint_every,
    sample_every,
    init_from,
    limit,
    resume,
) -> None:
    """Train IPCGAN: conditional generator, LSGAN, AlexNet-conv5 identity and age-group losses."""
    from faceage.training.ipcgan_trainer import IPCGANTrainOptions, train_ipcgan
    from faceage.training.run import resolve_device, resume_in_place

    opts = IPCGANTrainOptions(
        data=str(data),
        out=str(out),
        grouping=grouping,
        steps=steps,
        batch=batch,
        lr_g=lr_g,
        lr_d=lr_d,
        lambda_gan=lambda_gan,
        lambda_id=lambda_id,
        lambda_age=lambda_age,
        g_channels=g_channels,
        g_blocks=g_blocks,
        d_channels=d_channels,
        d_type=d_type,
        head=head,
        diffaugment=diffaugment,
        seed=seed,
        device=str(resolve_device(device)),
        threads=threads,
        max_minutes=max_minutes,
        checkpoint_every=checkpoint_every,
        sample_every=sample_every,
        init_from=init_from,
        limit=limit,
    )
    with keep_checkpoint_on_interrupt(out):
        train_ipcgan(opts, resume=resume_in_place(resume, out), log=click.echo)
