"""``faceage data``: commands that build training data from the face datasets.

Registered under ``faceage data``; ``python -m faceage.cli data prepare ...`` runs it without the console script.
"""

from __future__ import annotations

from pathlib import Path

import click

from faceage.cli_options import sigterm_as_interrupt
from faceage.data.pairs_commands import pairs_command

_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.group("data", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def data() -> None:
    """Prepare training data (aligned face shards) from UTKFace and All-Age-Faces."""


@data.command("prepare")
@click.option(
    "--utkface", "utkface", type=_FOLDER, default=None, help="UTKFace folder (its images/ or the folder above it)."
)
@click.option(
    "--aaf", "aaf", type=_FOLDER, default=None, help="All-Age-Faces folder holding images/, labels.csv and splits/."
)
@click.option(
    "--size", type=click.IntRange(16, 1024), default=128, show_default=True, help="Side of the aligned face in pixels."
)
@click.option(
    "--out",
    "out_dir",
    type=_FOLDER,
    required=True,
    help="Output folder for shards, labels.csv and manifest.json (never inside git).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker processes, each with its own face pipeline (1 = in this process).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Only N faces, a fixed random sample (for trials)."
)
@click.option("--overwrite", is_flag=True, help="Replace a previous preparation in --out.")
@click.option("--resume", is_flag=True, help="Continue an interrupted preparation in --out.")
@click.option(
    "--max-shard-mib", type=click.IntRange(1, 4096), default=48, show_default=True, help="Largest shard size in MiB."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare_command(utkface, aaf, size, out_dir, workers, limit, overwrite, resume, max_shard_mib, quiet) -> None:
    """Align every face into JPEG shards with labels and a train/val/test split."""
    from faceage.data.prepare import prepare

    if utkface is None and aaf is None:
        raise click.UsageError("give --utkface, --aaf or both")
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    try:
        with sigterm_as_interrupt():
            report = prepare(
                utkface,
                aaf,
                size=size,
                out_dir=out_dir,
                workers=workers,
                limit=limit,
                progress=not quiet,
                overwrite=overwrite,
                resume=resume,
                max_shard_bytes=max_shard_mib * 2**20,
            )
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished shards kept in {out_dir}; continue with --resume", err=True)
        raise SystemExit(130) from None
    click.echo(report.summary())


data.add_command(pairs_command)
