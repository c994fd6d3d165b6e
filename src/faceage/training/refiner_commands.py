"""``faceage train refiner``: train the realism refiner on the default method's teacher pairs."""

from __future__ import annotations

from pathlib import Path

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


@click.command("refiner", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--pairs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Teacher pairs (faceage data pairs --out).",
)
@data_option("Prepared faces the pairs were made from; their train split is also the real faces D sees.")
@out_folder_option("Run folder: options, metrics, checkpoints, samples, exported EMA refiner.")
@click.option("--steps", type=click.IntRange(1), default=4000, help="Total optimisation steps of the run.")
@click.option("--batch", type=click.IntRange(2, 4096), default=16, help="Pairs per step.")
@click.option("--lr-g", type=click.FloatRange(min=0, min_open=True), default=2e-4, help="Refiner Adam learning rate.")
@click.option(
    "--lr-d", type=click.FloatRange(min=0, min_open=True), default=6e-4, help="Discriminator Adam learning rate."
)
@click.option(
    "--lambda-gan", type=click.FloatRange(min=0), default=1.0, help="LSGAN term against real faces of the age."
)
@click.option(
    "--lambda-id", type=click.FloatRange(min=0), default=1.0, help="Identity term (conv5, beyond the prototype's own)."
)
@click.option("--lambda-age", type=click.FloatRange(min=0), default=0.5, help="Age-group softmax term (own regressor).")
@click.option(
    "--lambda-residual", type=click.FloatRange(min=0), default=10.0, help="Penalty on the squared size of the change."
)
@click.option("--channels", type=click.IntRange(4), default=16, help="Refiner width at full resolution.")
@click.option(
    "--diffaugment/--no-diffaugment",
    default=True,
    help="Translation, colour and cutout on every image the discriminator sees (DiffAugment).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0)
@device_option()
@click.option("--threads", type=click.IntRange(1, 256), default=2, help="torch CPU threads.")
@max_minutes_option
@click.option("--checkpoint-every", type=click.IntRange(1), default=200)
@click.option("--sample-every", type=click.IntRange(1), default=500)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from exported weights (e.g. the shipped ones) when no full checkpoint is left.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, hidden=True)
@resume_option()
def refiner_command(
    pairs,
    data,
    out,
    steps,
    batch,
    lr_g,
    lr_d,
    lambda_gan,
    lambda_id,
    lambda_age,
    lambda_residual,
    channels,
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
    """Train the realism refiner: projected D against real faces of the target age, identity, age, small change."""
    from faceage.training.refiner_trainer import RefinerTrainOptions, train_refiner
    from faceage.training.run import resolve_device, resume_in_place

    opts = RefinerTrainOptions(
        pairs=str(pairs),
        data=str(data),
        out=str(out),
        steps=steps,
        batch=batch,
        lr_g=lr_g,
        lr_d=lr_d,
        lambda_gan=lambda_gan,
        lambda_id=lambda_id,
        lambda_age=lambda_age,
        lambda_residual=lambda_residual,
        channels=channels,
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
        train_refiner(opts, resume=resume_in_place(resume, out), log=click.echo)
