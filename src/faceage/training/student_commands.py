"""``faceage train student``: distil the default method into the small student network."""

from __future__ import annotations

from pathlib import Path

import click

from faceage.cli_options import (
    CONTEXT_SETTINGS,
    data_option,
    device_option,
    int_list,
    keep_checkpoint_on_interrupt,
    max_minutes_option,
    out_folder_option,
    resume_option,
)


@click.command("student", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--pairs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Teacher pairs (faceage data pairs --out).",
)
@data_option("Prepared faces the pairs were made from.")
@out_folder_option("Run folder: options, metrics, checkpoints, exported student.")
@click.option("--steps", type=click.IntRange(1), default=6000, help="Total optimisation steps of the run.")
@click.option("--batch", type=click.IntRange(2, 4096), default=16, help="Pairs per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, help="Adam learning rate.")
@click.option("--widths", type=int_list, default="16,32,64,96", help="Channels at each level (full network).")
@click.option(
    "--top-width", type=click.IntRange(4), default=8, help="Channels of the decoder levels above the input size."
)
@click.option("--resolutions", type=int_list, default="64,128,256", help="Output resolutions of the sub-networks.")
@click.option(
    "--lambda-chroma",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Weight of the smooth colour error to the teacher (0: as the first shipped student).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0)
@device_option()
@click.option("--threads", type=click.IntRange(1, 256), default=2, help="torch CPU threads.")
@max_minutes_option
@click.option("--checkpoint-every", type=click.IntRange(1), default=200)
@click.option("--eval-every", type=click.IntRange(1), default=500)
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from exported weights (e.g. the shipped ones) when no full checkpoint is left.",
)
@resume_option()
def student_command(
    pairs,
    data,
    out,
    steps,
    batch,
    lr,
    widths,
    top_width,
    resolutions,
    lambda_chroma,
    seed,
    device,
    threads,
    max_minutes,
    checkpoint_every,
    eval_every,
    init_from,
    resume,
) -> None:
    """Distil the default method: flow + colour/detail change, sub-networks by resolution and width."""
    from faceage.training.run import resolve_device, resume_in_place
    from faceage.training.student_trainer import StudentTrainOptions, train_student

    try:
        opts = StudentTrainOptions(
            pairs=str(pairs),
            data=str(data),
            out=str(out),
            steps=steps,
            batch=batch,
            lr=lr,
            widths=widths,
            top_width=top_width,
            resolutions=resolutions,
            lambda_chroma=lambda_chroma,
            seed=seed,
            device=str(resolve_device(device)),
            threads=threads,
            max_minutes=max_minutes,
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            init_from=init_from,
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    with keep_checkpoint_on_interrupt(out):
        train_student(opts, resume=resume_in_place(resume, out), log=click.echo)
