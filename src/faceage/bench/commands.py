"""``faceage bench``: benchmarks that write results files (benchmarks/results/).

``bench aging`` (any aging method: ages, identity, guards, edit size, LAG, grid) and ``bench gan``
(the face generator's sub-models). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from faceage.bench.aging_commands import aging_command
from faceage.cli_options import CONTEXT_SETTINGS as _CTX
from faceage.cli_options import data_option, device_option
from faceage.cli_options import float_list as _float_list
from faceage.cli_options import int_list as _int_list

_DIR = click.Path(file_okay=False, path_type=Path)


@click.group("bench", context_settings=_CTX)
def bench() -> None:
    """Benchmarks that write results files (benchmarks/results/)."""


@bench.command("gan")
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Model folder (exported G_ema), checkpoint .json, or run folder (newest checkpoint).",
)
@data_option("Prepared shard folder with the real faces.", must_exist=False)
@click.option("--n", type=click.IntRange(min=10), default=10000, help="Generated (and real) faces per FD.")
@click.option(
    "--n-faces",
    type=click.IntRange(min=0),
    default=500,
    help="Generated faces per sub-model given to the face detector and age estimator (CPU-bound).",
)
@click.option("--resolutions", type=str, default="32,64,128", callback=lambda c, p, v: _int_list(v))
@click.option("--ratios", type=str, default="0.25,0.5,0.75,1", callback=lambda c, p, v: _float_list(v))
@click.option("--split", default="train", help="Real faces to compare with.")
@click.option("--truncation", type=click.FloatRange(0, 1), default=1.0)
@click.option("--batch", type=click.IntRange(1, 4096), default=250)
@device_option()
@click.option("--seed", type=int, default=0)
@click.option("--cache", type=_DIR, default=None, help="Real-statistics cache (default: DATA/.fdstats).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("benchmarks/results/gan.md"),
    help="Markdown report; the JSON goes beside it.",
)
def bench_gan(**kw) -> None:
    """FD per sub-model, sub-vs-full consistency, detector hit rate and age spread of generated faces."""
    from faceage.training.gan_benchmark import bench_gan as run

    report = run(**kw, echo=click.echo)
    click.echo(f"wrote {report['files']['markdown']} and {report['files']['json']}")


bench.add_command(aging_command)
