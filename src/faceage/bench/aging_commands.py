"""``faceage bench aging``: the aging benchmark of one method on the test split, with its guards and
the real-person (LAG) protocol (results file, JSON and picture grid)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from faceage.cli_options import data_option
from faceage.methods.registry import DEFAULT_METHOD, method_names, parse_sets, set_option


@click.command("aging", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--method",
    "method_name",
    type=click.Choice(method_names()),
    default=DEFAULT_METHOD,
    help="Aging method (faceage.methods.registry).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Weights file instead of the shipped ones.",
)
@set_option
@data_option("Prepared shard folder (faceage data prepare --out); faces are resized to the method's size.")
@click.option("--split", default="test")
@click.option("--limit", type=click.IntRange(min=1), default=500, help="Faces sampled from the split (seeded).")
@click.option("--seed", type=int, default=0)
@click.option(
    "--gray-faces", type=click.IntRange(min=0), default=32, help="Gray copies checked for staying gray (0: skip)."
)
@click.option("--realism/--no-realism", default=True, help="FD and KID against real faces of each target group.")
@click.option(
    "--lag",
    "lag_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("../shared/datasets/lag"),
    help="LAG dataset folder (images/PERSON/young|old/NN.jpg) for the real-person protocol.",
)
@click.option(
    "--lag-limit",
    type=click.IntRange(min=0),
    default=None,
    help="First N LAG people (default all; 0 skips the protocol).",
)
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Picture grid PNG [default: grid_METHOD.png beside --out].",
)
@click.option("--no-grid", is_flag=True, help="Do not write the picture grid.")
@click.option(
    "--lag-only",
    is_flag=True,
    help="Run only the LAG protocol and add it to this method's existing results (JSON beside --out).",
)
@click.option("--device", default="cpu")
@click.option("--threads", type=click.IntRange(1, 256), default=2)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("benchmarks/results/aging.md"),
    help="Markdown results file (one section per method); the JSON goes beside it.",
)
def aging_command(
    method_name,
    weights,
    sets,
    data,
    split,
    limit,
    seed,
    gray_faces,
    realism,
    lag_root,
    lag_limit,
    grid,
    no_grid,
    lag_only,
    device,
    threads,
    out,
) -> None:
    """Predicted age (independent estimator) and identity (SFace) per target group 0/10/20/30/50, the
    guards (chroma detail, gray kept, realism, second age opinion) and the LAG real-person protocol."""
    import json

    import torch

    from faceage.atomic import write_text_atomic
    from faceage.bench.aging import format_report, grid_faces, run_aging_benchmark, update_results_file
    from faceage.errors import DatasetError
    from faceage.machine import device_name
    from faceage.methods.registry import load_method

    options = parse_sets(None, None, sets)
    if lag_limit != 0 and not (lag_root / "images").is_dir():
        raise DatasetError(f"LAG folder not found: {lag_root} (pass --lag PATH, or --lag-limit 0 to skip)")
    json_path = out.with_name(f"{out.stem}-{method_name}.json")
    command = "faceage " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "faceage bench aging"
    if lag_only:
        if lag_limit == 0:
            raise click.BadParameter("--lag-only with --lag-limit 0 has nothing to run", param_hint="--lag-only")
        if not json_path.is_file():
            raise DatasetError(
                f"--lag-only adds to existing results, but {json_path} does not exist (run the bench first)"
            )
        previous = json.loads(json_path.read_text(encoding="utf-8"))
    torch.set_num_threads(threads)
    method = load_method(method_name, device=device, weights=weights, **options)
    if lag_only:
        from faceage.bench.lag import run_lag

        result = previous
        result["lag"] = run_lag(method, lag_root, lag_limit, log=click.echo)
        result["lag_command"] = command
        update_results_file(out, format_report(result, result.get("command", "?"), result.get("machine", "?")))
        write_text_atomic(json_path, json.dumps(result, indent=1) + "\n")
        click.echo(f"wrote {out}")
        return
    result = run_aging_benchmark(
        method, data, split=split, limit=limit, seed=seed, log=click.echo, gray_faces=gray_faces, realism=realism
    )
    if lag_limit != 0:
        from faceage.bench.lag import run_lag

        result["lag"] = run_lag(method, lag_root, lag_limit, log=click.echo)
    if not no_grid:
        from faceage.bench.grid import GRID_TARGETS, render_grid, write_png
        from faceage.eval.age_estimator import AgeEstimator

        grid = grid or out.with_name(f"grid_{method_name}.png")
        faces, points = grid_faces(data, split, seed, method)
        write_png(grid, render_grid(method, faces, AgeEstimator().estimate_aligned(faces), landmarks=points))
        result["grid"], result["grid_targets"] = grid.name, list(GRID_TARGETS)
        click.echo(f"wrote {grid}")
    machine = f"{device_name(device)}, {torch.get_num_threads()} torch threads, device {device}"
    result["options"], result["command"], result["machine"] = options, command, machine
    update_results_file(out, format_report(result, command, machine))
    write_text_atomic(json_path, json.dumps(result, indent=1) + "\n")
    click.echo(f"wrote {out}")
