"""``faceage age``: age every face in photos or folders of photos, with a per-face report.

Outputs go to ``OUT/<stem>_age<N>.<ext>`` (JPEG and PNG inputs keep their format, anything else
becomes PNG), written atomically and never onto an input. A folder input is searched recursively
(sorted); its outputs mirror its subfolders under ``-o OUT``, files whose outputs all exist are
skipped (resume) unless ``--overwrite``, and ``OUT/summary.csv`` holds one row per face and age.
Failing files are listed at the end; the exit code is 1 only when every input failed.

Progressions (original + every age): ``<stem>_strip.<ext>`` (``--strip``),
``<stem>_progression.gif`` / ``.mp4`` (``--gif`` / ``--mp4``); with ``--crop`` one per face of its
aligned crop, ``<stem>_face<i>_strip.<ext>`` and so on. Images and GIFs carry provenance metadata
(``faceage.outputs.provenance``); MP4 cannot.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import click

from faceage.cli_options import report_failures, run_per_file
from faceage.errors import ImageWriteError
from faceage.methods.registry import DEFAULT_METHOD, method_names
from faceage.outputs.results import age_label, progression_frames, result_provenance

# what a folder scan picks up (anything else in the folder is ignored, not reported)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# outputs keep these formats; other inputs (lossless or not writable by us) become PNG
KEEP_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
SUMMARY_NAME = "summary.csv"
SUMMARY_FIELDS = ("file", "face", "source_age", "target_age", "reached_age", "identity", "same_person", "ms")
GIF_FRAME_MS = 600  # long enough to read each label


def parse_ages(ctx: click.Context, param: click.Parameter, value: str | tuple | None) -> tuple[float, ...] | None:
    """``--to``: '60' or '10,30,50,70' -> (60.0,) / (10.0, 30.0, 50.0, 70.0); each in 0..120, each once."""
    if value is None or isinstance(value, tuple):  # tuple: already parsed (ctx.invoke)
        return value
    from faceage.age_groups import check_target_age  # here: numpy is not needed for --help

    example = "an age or comma-separated ages such as 60 or 10,30,50,70"
    ages = []
    for part in value.split(","):
        try:
            ages.append(check_target_age(float(part)))
        except ValueError as error:
            reason = str(error) if part.strip() else "empty entry"
            if "could not convert" in reason:
                reason = f"{part.strip()!r} is not a number"
            raise click.BadParameter(f"expected {example}: {reason}") from None
    if len(set(ages)) != len(ages):
        raise click.BadParameter(f"each age once, got {value}")
    return tuple(ages)


@dataclass(frozen=True)
class Job:
    """One input photo and where its outputs go."""

    source: Path
    out_dir: Path
    from_folder: bool  # resume (skip done outputs) applies to folder inputs

    @property
    def suffix(self) -> str:
        suffix = self.source.suffix.lower()
        return suffix if suffix in KEEP_SUFFIXES else ".png"

    def age_path(self, age: float) -> Path:
        return self.out_dir / f"{self.source.stem}_age{age_label(age)}{self.suffix}"

    def strip_path(self, face: int | None) -> Path:
        return self.out_dir / f"{self.source.stem}{_face_part(face)}_strip{self.suffix}"

    def animation_path(self, face: int | None, suffix: str) -> Path:
        return self.out_dir / f"{self.source.stem}{_face_part(face)}_progression{suffix}"


def _face_part(face: int | None) -> str:
    return "" if face is None else f"_face{face}"


@dataclass(frozen=True)
class Options:
    ages: tuple[float, ...]
    strip: bool
    gif: bool
    mp4: bool
    crop: bool
    overwrite: bool

    @property
    def progression(self) -> bool:
        return self.strip or self.gif or self.mp4

    def expected(self, job: Job) -> list[Path]:
        """The outputs whose presence marks a file as done (with --crop: those of its first face)."""
        paths = [job.age_path(age) for age in self.ages]
        face = 0 if self.crop else None
        if self.strip:
            paths.append(job.strip_path(face))
        if self.gif:
            paths.append(job.animation_path(face, ".gif"))
        if self.mp4:
            paths.append(job.animation_path(face, ".mp4"))
        return paths


@dataclass
class FileResult:
    file: str
    outputs: list[str]
    ages: list[dict]
    rows: list[dict] = field(default_factory=list)


def collect_jobs(paths: tuple[Path, ...], out_dir: Path | None) -> list[Job]:
    """Files as given; folders expanded to their images (recursive, sorted, hidden names and
    anything under ``out_dir`` left out). Each source appears once."""
    jobs: dict[Path, Job] = {}
    out_resolved = out_dir.resolve() if out_dir is not None else None
    for path in paths:
        if path.is_dir():
            assert out_dir is not None  # checked by the command
            for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue  # hidden files, and temp files of an interrupted atomic write
                if out_resolved is not None and out_resolved in file.resolve().parents:
                    continue  # our own outputs when OUT is inside the folder
                jobs.setdefault(file.resolve(), Job(file, out_dir / relative.parent, True))
        else:
            jobs.setdefault(path.resolve(), Job(path, out_dir if out_dir is not None else path.parent, False))
    return list(jobs.values())


class _Writer:
    """Writes outputs atomically, never onto an input and never twice to one path in a run."""

    def __init__(self, protect: set[str]) -> None:
        self.protect = protect
        self.claimed: dict[Path, str] = {}

    def claim(self, path: Path, source: Path) -> Path:
        key = path.resolve()
        other = self.claimed.setdefault(key, str(source))
        if other != str(source):
            raise ImageWriteError(f"{source.name}: output {path} was already written for {other} in this run; "
                                  "rename one of the inputs")
        if str(key) in self.protect:
            raise ImageWriteError(f"{path.name}: refusing to overwrite an input image ({path}); choose another output folder")
        return path

    def image(self, path: Path, source: Path, rgb, metadata: dict) -> str:
        from faceage.imageio import save_image

        return str(save_image(self.claim(path, source), rgb, metadata=metadata))

    def gif(self, path: Path, source: Path, frames, labels, metadata: dict) -> str:
        from faceage.outputs.progression import save_gif

        return str(save_gif(self.claim(path, source), frames, labels, GIF_FRAME_MS, metadata=metadata))

    def mp4(self, path: Path, source: Path, frames, labels) -> str:
        from faceage.outputs.progression import save_mp4

        return str(save_mp4(self.claim(path, source), frames, labels, fps=1000.0 / GIF_FRAME_MS))


def _age_file(job: Job, ager, opts: Options, writer: _Writer) -> FileResult:
    from faceage.imageio import load_image

    rgb = load_image(job.source)
    results = ager.age(rgb, to=list(opts.ages))
    info = ager.method.describe()
    outputs, ages, rows = [], [], []
    for result in results:
        path = writer.image(job.age_path(result.requested_age), job.source, result.image,
                            result_provenance(info, [result]))
        outputs.append(path)
        ages.append({"output": path, **result.to_dict()})
        rows += [{"file": str(job.source), **_row(face)} for face in result.faces]
    if opts.progression:
        outputs += _progressions(job, rgb, results, opts, writer, info)
    return FileResult(str(job.source), outputs, ages, rows)


def _progressions(job: Job, rgb, results, opts: Options, writer: _Writer, info: dict) -> list[str]:
    from faceage.outputs.progression import progression_strip

    metadata = result_provenance(info, results)
    written = []
    # with --crop one progression per face, of its aligned crop
    for face in range(len(results[0].faces)) if opts.crop else [None]:
        frames, labels = progression_frames(results, rgb, face)
        if opts.strip:
            strip = progression_strip(frames, labels)
            written.append(writer.image(job.strip_path(face), job.source, strip, metadata))
        if opts.gif:
            written.append(writer.gif(job.animation_path(face, ".gif"), job.source, frames, labels, metadata))
        if opts.mp4:
            written.append(writer.mp4(job.animation_path(face, ".mp4"), job.source, frames, labels))
    return written


def _row(face) -> dict:
    d = face.to_dict()
    return {"face": d["index"], **{k: ("" if d[k] is None else d[k]) for k in SUMMARY_FIELDS[2:]}}


def _read_summary(path: Path) -> dict[str, list[dict]]:
    """Rows of a previous summary, by file (an unreadable or foreign CSV gives none)."""
    rows: dict[str, list[dict]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != SUMMARY_FIELDS:
                return {}
            for row in reader:
                rows.setdefault(row["file"], []).append(row)
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return rows


def _write_summary(path: Path, jobs: list[Job], done: dict[str, list[dict]], skipped: set[str]) -> None:
    from faceage.atomic import write_text_atomic

    previous = _read_summary(path) if skipped else {}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for job in jobs:
        file = str(job.source)
        writer.writerows(done.get(file) or (previous.get(file, []) if file in skipped else []))
    write_text_atomic(path, buffer.getvalue())


def _face_line(face: dict) -> str:
    text = f"  face {face['index']}: age {face['source_age']:.1f} -> target {face['target_age']:g}"
    if face["reached_age"] is None:
        return text + " (not evaluated)"
    same = "same person" if face["same_person"] else "NOT the same person"
    return text + f": reached {face['reached_age']:.1f}, identity {face['identity']:.2f} ({same}), {face['ms']:.0f} ms"


@click.command("age")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "ages", required=True, callback=parse_ages, metavar="AGE[,AGE...]",
              help="Target age, or several: 60 or 10,30,50,70 (years, 0-120).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (created if missing). Default: beside each input file; required for folders.")
@click.option("--method", type=click.Choice(method_names()), default=DEFAULT_METHOD, help="Aging method.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights file for the method instead of the shipped one.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Where the method runs.")
@click.option("--max-faces", type=click.IntRange(min=1), default=None, help="Age at most N faces per photo (largest first).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--strip", is_flag=True, help="Also write a labelled progression strip (original + every age).")
@click.option("--gif", is_flag=True, help="Also write an animated GIF of the progression.")
@click.option("--mp4", is_flag=True, help="Also write the progression as an MP4 video (no metadata inside).")
@click.option("--crop", is_flag=True, help="Progressions of each aligned face instead of the whole photo.")
@click.option("--no-eval", is_flag=True, help="Skip measuring reached age and identity (faster).")
@click.option("--overwrite", is_flag=True, help="Redo files of a folder input whose outputs already exist.")
def age(paths: tuple[Path, ...], ages: tuple[float, ...], out_dir: Path | None, method: str, weights: Path | None,
        device: str, max_faces: int | None, as_json: bool, strip: bool, gif: bool, mp4: bool, crop: bool, no_eval: bool,
        overwrite: bool) -> None:
    """Age every face in each PHOTO (or every photo under a folder) to --to years.

    Prints, per face: estimated source age, target, age reached and identity similarity (both
    measured by independent models on the output).
    """
    from tqdm import tqdm


    if crop and not (strip or gif or mp4):
        raise click.UsageError("--crop applies to the progression outputs: add --strip, --gif or --mp4")
    folders = [str(p) for p in paths if p.is_dir()]
    if folders and out_dir is None:
        raise click.UsageError(f"folder input {folders[0]} needs an output folder: add -o OUT")
    opts = Options(tuple(ages), strip, gif, mp4, crop, overwrite)
    jobs = collect_jobs(paths, out_dir)
    if not jobs:
        raise click.UsageError(f"no images found in {', '.join(folders)}")

    todo, skipped = [], set()
    for job in jobs:
        if job.from_folder and not overwrite and all(p.is_file() for p in opts.expected(job)):
            skipped.add(str(job.source))
        else:
            todo.append(job)

    from faceage.methods.engine import Ager
    from faceage.methods.registry import load_method

    # nothing to do (a finished batch run again) needs no models
    ager = Ager(load_method(method, device=device, weights=weights), evaluate=not no_eval,
                max_faces=max_faces) if todo else None
    by_file = {str(job.source): job for job in todo}
    writer = _Writer({str(job.source.resolve()) for job in jobs})

    def one(file: str) -> FileResult:
        result = _age_file(by_file[file], ager, opts, writer)
        if not as_json:
            for entry in result.ages:
                tqdm.write(f"{file} -> {entry['output']}")
                if entry["warning"]:
                    tqdm.write(f"  note: {entry['warning']}")
                for face in entry["faces"]:
                    tqdm.write(_face_line(face))
        return result

    bar = tqdm(list(by_file), desc="aging", unit="photo", disable=None if len(todo) > 1 else True)
    results, failures = run_per_file(bar, one)
    bar.close()

    summary = None
    if folders:
        assert out_dir is not None  # checked above: folder inputs need -o
        summary = out_dir / SUMMARY_NAME
        _write_summary(summary, jobs, {r.file: r.rows for r in results}, skipped)
    if as_json:
        payload = {
            "method": method,
            "ages": list(ages),
            "results": [{"file": r.file, "outputs": r.outputs, "ages": r.ages} for r in results],
            "skipped": sorted(skipped),
            "failures": [f.__dict__ for f in failures],
            "summary": None if summary is None else str(summary),
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        if skipped:
            click.echo(f"skipped {len(skipped)} of {len(jobs)} files whose outputs exist (--overwrite to redo)")
        if summary is not None:
            click.echo(f"summary: {summary}")
    report_failures(failures, len(jobs))
