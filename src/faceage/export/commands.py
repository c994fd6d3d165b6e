"""``faceage export onnx``: write the generators as ONNX, each file verified in onnxruntime.

Heavy modules (torch, the exporter) are imported inside the command so ``faceage --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from faceage.cli_options import CONTEXT_SETTINGS as _CTX
from faceage.cli_options import float_list as _float_list
from faceage.cli_options import int_list as _int_list


@click.group("export", context_settings=_CTX)
def export() -> None:
    """Export faceage's networks for other runtimes."""


@export.command("onnx", context_settings=_CTX)
@click.option(
    "--generator",
    "generator",
    type=click.Path(path_type=Path),
    help="StyleGAN2 generator folder (config.json + model.safetensors): writes mapping.onnx and "
    "one synthesis graph (W+ codes -> image) per resolution and channel ratio.",
)
@click.option(
    "--ipcgan",
    "ipcgan",
    type=click.Path(path_type=Path),
    help="IPCGAN generator weights (.safetensors with its .json beside it).",
)
@click.option(
    "--student",
    "student",
    type=click.Path(path_type=Path),
    help="Student weights (.safetensors with its .json): one graph per sub-network (--resolutions, --ratios).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the .onnx files and onnx_manifest.json (created if missing).",
)
@click.option(
    "--resolutions",
    default=None,
    help="Comma-separated output sizes of the sub-generators [default: those of 32,64,128 the generator has].",
)
@click.option("--ratios", default="0.25,0.5,0.75,1", help="Comma-separated channel ratios in (0, 1].")
@click.option("--opset", type=click.IntRange(min=18), default=18, help="ONNX opset (torch's exporter emits >= 18).")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    help="Largest |onnxruntime - torch| accepted on random inputs.",
)
def onnx_command(
    generator: Path | None,
    ipcgan: Path | None,
    student: Path | None,
    out_dir: Path,
    resolutions: str | None,
    ratios: str,
    opset: int,
    tolerance: float,
) -> None:
    """Export generators as ONNX (dynamic batch axis, constant noise), check each in onnxruntime.

    Every file is compared with PyTorch on random inputs and timed at batch 1 on the CPU; the
    results go to OUT/onnx_manifest.json.
    """
    from faceage.export.onnx import MANIFEST_NAME, export_onnx

    if generator is None and ipcgan is None and student is None:
        raise click.UsageError("name at least one of --generator, --ipcgan and --student")
    res = _int_list(resolutions) if resolutions else None
    rat = _float_list(ratios)
    if not rat:
        raise click.BadParameter("give at least one ratio", param_hint="--ratios")

    def show(entry) -> None:
        click.echo(
            f"{entry.file}: max |onnx - torch| {entry.max_abs_diff:.2e}, {entry.ms_per_image:.2f} ms/image "
            f"(onnxruntime CPU, batch 1), {entry.bytes / 2**20:.2f} MiB"
        )

    entries = export_onnx(
        out_dir,
        generator=generator,
        ipcgan=ipcgan,
        student=student,
        resolutions=res,
        ratios=rat,
        opset=opset,
        tolerance=tolerance,
        progress=show,
    )
    files = "file" if len(entries) == 1 else "files"
    click.echo(f"{len(entries)} {files} verified; manifest: {out_dir / MANIFEST_NAME}")
