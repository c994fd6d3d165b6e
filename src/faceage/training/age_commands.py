"""``faceage train age``: train faceage's own age regressor on prepared face shards.

Registered under the ``train`` group (``faceage train age``, or ``python -m faceage.cli train age``).
"""

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


@click.command("age", context_settings=CONTEXT_SETTINGS)
@data_option()
@out_folder_option("Run folder: options, metrics, checkpoints, best weights, test report.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=10, help="Passes of len(train) sampled faces.")
@click.option("--batch", type=click.IntRange(2, 4096), default=128, help="Faces per step.")
@click.option(
    "--size",
    type=click.Choice(["64", "128"]),
    default="64",
    help="Training resolution = the model's input size (larger inputs are resized inside).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, help="Peak AdamW learning rate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed for init, sampling, augmentation.")
@click.option(
    "--balance-power",
    type=click.FloatRange(0, 1),
    default=0.5,
    help="Decade weight 1/count**power when sampling: 0 natural, 1 fully balanced.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=2,
    help="torch CPU threads. On a shared CPU also set OMP_WAIT_POLICY=PASSIVE (spinning threads stall).",
)
@device_option()
@max_minutes_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    help="Only the first N faces of each split (trials).",
)
@resume_option()
def age_command(
    data, out, epochs, batch, size, lr, seed, balance_power, threads, device, max_minutes, limit, resume
) -> None:
    """Train the differentiable age regressor used by training losses (never by evaluation)."""
    from faceage.training.age_trainer import AgeTrainOptions, train_age_regressor
    from faceage.training.run import resolve_device, resume_in_place

    opts = AgeTrainOptions(
        data=str(data),
        out=str(out),
        epochs=epochs,
        batch=batch,
        size=int(size),
        lr=lr,
        seed=seed,
        balance_power=balance_power,
        threads=threads,
        device=str(resolve_device(device)),
        max_minutes=max_minutes,
        limit=limit,
    )
    with keep_checkpoint_on_interrupt(out):
        train_age_regressor(opts, resume=resume_in_place(resume, out), log=click.echo)
