"""``faceage bench aging``: the aging benchmark of one method on the test split (results file)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from faceage.methods.registry import DEFAULT_METHOD, method_names


@click.command("aging", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--method", "method_name", type=click.Choice(method_names()), default=DEFAULT_METHOD, help="Aging method.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Weights file instead of the shipped ones.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Prepared shard folder (faceage data prepare --out).")
@click.option("--split", default="test")
@click.option("--limit", type=click.IntRange(min=1), default=500, help="Faces sampled from the split (seeded).")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu")
@click.option("--threads", type=click.IntRange(1, 256), default=2)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmarks/results/aging.md"),
              help="Markdown results file (one section per method); the JSON goes beside it.")
def aging_command(method_name, weights, data, split, limit, seed, device, threads, out) -> None:
    """Predicted age (independent estimator) and identity (SFace) per target group 0/10/20/30/50."""
    import json

    import torch

    from faceage.atomic import write_text_atomic
    from faceage.eval.aging_bench import format_report, run_aging_benchmark, update_results_file
    from faceage.machine import device_name
    from faceage.methods.registry import load_method

    torch.set_num_threads(threads)
    method = load_method(method_name, device=device, weights=weights)
    result = run_aging_benchmark(method, data, split=split, limit=limit, seed=seed, log=click.echo)
    command = "faceage " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "faceage bench aging"
    machine = f"{device_name(device)}, {torch.get_num_threads()} torch threads, device {device}"
    update_results_file(out, format_report(result, command, machine))
    write_text_atomic(out.with_name(f"{out.stem}-{method_name}.json"), json.dumps(result, indent=1) + "\n")
    click.echo(f"wrote {out}")
