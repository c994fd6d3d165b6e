"""The ``faceage`` command.

Every command imports its heavy modules lazily so ``faceage --help`` stays instant. Errors that a
user can cause (``FaceageError``) become one line on stderr and exit code 1, never a traceback.
Commands over several photos keep going past a bad file, list the failures at the end, and exit
non-zero only when every input failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from faceage.assets import EXAMPLE_PHOTO
from faceage.cli_options import CONTEXT_SETTINGS, report_failures, run_per_file, silence
from faceage.errors import FaceageError
from faceage.runtime import missing_runtime_message
from faceage.version import __version__


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="faceage")
def cli() -> None:
    """Show a face at another age, offline. Every result reports the age reached and identity kept."""


def _estimate_photo(path: str, pipeline, estimator) -> dict:
    from faceage.imageio import load_image
    from faceage.methods.engine import face_ages

    rgb = load_image(path)
    faces = pipeline.process(rgb)
    ages = face_ages(estimator, rgb, faces) if faces else []
    return {
        "file": path,
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "faces": [
            {
                "box": [round(float(v), 1) for v in face.box],
                "score": round(float(face.score), 3),
                "age": round(float(age), 1),
            }
            for face, age in zip(faces, ages)
        ],
    }


@cli.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def estimate(photos: tuple[str, ...], as_json: bool) -> None:
    """Estimate the age of every face in each PHOTO with the independent evaluator (on the aligned
    face, the same measurement `faceage age` reports as the age at the photo)."""
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.faces.pipeline import FacePipeline
    from faceage.methods.engine import MEASURE_SIZE

    pipeline, estimator = FacePipeline(size=MEASURE_SIZE), AgeEstimator()
    results, failures = run_per_file(photos, lambda p: _estimate_photo(p, pipeline, estimator))
    if as_json:
        payload = {"results": results, "failures": [f.__dict__ for f in failures]}
        click.echo(json.dumps(payload, indent=2))
    else:
        for result in results:
            if not result["faces"]:
                click.echo(f"{result['file']}: no face found")
            for index, face in enumerate(result["faces"]):
                x0, y0, x1, y1 = face["box"]
                click.echo(
                    f"{result['file']}: face {index}: box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) "
                    f"age {face['age']:.1f}"
                )
    report_failures(failures, len(photos))


def _masks_photo(path: str, out_dir: Path, pipeline, segmenter, protect: set[str]) -> list[Path]:
    from faceage.errors import NoFaceError
    from faceage.faces.masks import face_masks, mask_overlay
    from faceage.imageio import load_image, save_image

    rgb = load_image(path)
    faces = pipeline.process(rgb)
    if not faces:
        raise NoFaceError("no face found")
    written = []
    stem = Path(path).stem
    for index, face in enumerate(faces):
        if face.landmarks is None:
            continue
        masks = face_masks(face.image, face.landmarks, segmenter.predict(face.image))
        aligned_path = out_dir / f"{stem}_face{index}_aligned.png"
        overlay_path = out_dir / f"{stem}_face{index}_masks.png"
        save_image(aligned_path, face.image, protect=protect)
        save_image(overlay_path, mask_overlay(face.image, masks), protect=protect)
        written += [aligned_path, overlay_path]
    if not written:
        raise NoFaceError("faces found but no dense landmarks could be fitted")
    return written


@cli.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the aligned faces and mask overlays (created if missing).",
)
@click.option(
    "--size", type=click.Choice(["128", "256", "1024"]), default="256", help="Side of the aligned face in pixels."
)
def masks(photos: tuple[str, ...], out_dir: Path, size: str) -> None:
    """Align every face in each PHOTO and write its semantic masks as an overlay."""
    from faceage.faces.pipeline import FacePipeline
    from faceage.faces.segment import PersonSegmenter

    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline, segmenter = FacePipeline(size=int(size)), PersonSegmenter()
    protect = {str(Path(p).resolve()) for p in photos}
    results, failures = run_per_file(photos, lambda p: _masks_photo(p, out_dir, pipeline, segmenter, protect))
    for path in (p for written in results for p in written):
        click.echo(str(path))
    report_failures(failures, len(photos))


@cli.command()
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    help="Folder for the demo outputs.",
)
def demo(out_dir: Path) -> None:
    """Run the main job on the embedded example photo (public-domain NASA portrait)."""
    ctx = click.get_current_context()
    click.echo(f"example photo: {EXAMPLE_PHOTO}")
    ctx.invoke(estimate, photos=(str(EXAMPLE_PHOTO),), as_json=False)
    ctx.invoke(masks, photos=(str(EXAMPLE_PHOTO),), out_dir=out_dir, size="256")
    from faceage.methods.commands import age
    from faceage.methods.registry import DEFAULT_METHOD, METHODS, available_methods

    methods = available_methods()
    if methods:
        method = DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]
        click.echo(f"aging method: {method} ({METHODS[method].label()})")
        ctx.invoke(
            age, paths=(EXAMPLE_PHOTO,), ages=(10.0, 30.0, 50.0, 70.0), out_dir=out_dir, method=method, strip=True
        )
    else:
        click.echo("no aging weights are installed in faceage/weights: skipping the aging step")
    click.echo(f"outputs are in {out_dir.resolve()}")


def _register_groups() -> None:
    """Attach the commands and command groups that live beside the code they drive."""
    from faceage.bench.commands import bench
    from faceage.data.commands import data
    from faceage.export.commands import export
    from faceage.methods.commands import age
    from faceage.outputs.commands import info
    from faceage.serve.commands import serve
    from faceage.training.commands import train

    for command in (age, info, serve, data, train, bench, export):
        cli.add_command(command)


_register_groups()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors as one line, no traceback."""
    try:
        cli.main(args=argv, prog_name="faceage", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as error:
        error.show()
        raise SystemExit(error.exit_code) from None
    except FaceageError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(1) from None
    except ImportError as error:
        message = missing_runtime_message(error)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except BrokenPipeError:  # stdout's reader went away (`| head`): stop quietly, like other tools
        silence(sys.stdout)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
