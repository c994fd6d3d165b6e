"""``faceage age``: age every face in photos or folders of photos, with a per-face report.

Outputs go to ``OUT/<stem>_age<N>.<ext>`` (JPEG and PNG inputs keep their format, anything else
becomes PNG), written atomically (complete or absent) and never onto an input. Inputs whose names
would give the same outputs (``same.bmp``, ``same.tif``) get their format in the name
(``same_bmp_age60.png``). An existing file at an output name is replaced only when faceage made it
from the same input (its provenance or the batch record says so) or with ``--overwrite``; otherwise
that input fails with a one-line reason.

A folder input is searched recursively (sorted); its outputs mirror its subfolders under ``-o OUT``.
What was skipped by the scan (symlink loops, dangling links, unreadable folders, pipes, faceage's own
outputs) is listed. ``OUT/.faceage-batch.jsonl`` records, per finished input, its size and mtime,
the settings, and the size and SHA-256 of every output; a rerun skips an input (resume) only when
all of that still matches, unless ``--overwrite``. ``OUT/summary.csv`` holds one row per face and
age: appended as each file finishes, and rewritten in input order at the end, so it is complete
after an interrupt and a resume. Failing files are listed at the end; the exit code is 1 when
every input failed, or when a fault makes every write fail (disk full, read-only folder): then the
run stops at once, after saving the summary so far.

Progressions (original + every age): ``<stem>_strip.<ext>`` (``--strip``),
``<stem>_progression.gif`` / ``.mp4`` (``--gif`` / ``--mp4``); with ``--crop`` one per face of its
aligned crop, ``<stem>_face<i>_strip.<ext>`` and so on. Images and GIFs carry provenance metadata
(``faceage.outputs.provenance``); MP4 cannot.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import click

from faceage.cli_options import FileFailure, parse_sets, report_failures, set_option
from faceage.errors import FaceageError, ImageReadError, ImageWriteError, OutputUnwritableError
from faceage.methods.registry import method_help, method_option
from faceage.outputs.results import age_label, progression_frames, result_provenance

# what a folder scan picks up (anything else in the folder is ignored, not reported)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# outputs keep these formats; other inputs (lossless or not writable by us) become PNG
KEEP_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
SUMMARY_NAME = "summary.csv"
RECORD_NAME = ".faceage-batch.jsonl"
SUMMARY_FIELDS = (
    "file",
    "face",
    "source_age",
    "target_age",
    "reached_age",
    "identity",
    "same_person",
    "ms",
    "estimated_age",  # source_age is the given age at the photo (--from) when there is one, else this
    "given_age",
)
_OLD_SUMMARY_FIELDS = SUMMARY_FIELDS[:8]  # before --from: still ours, rewritten with both columns
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


def parse_known_ages(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> float | tuple[float | None, ...] | None:
    """``--from``: '8' -> 8.0 (every face's age at the photo); '8,35' -> (8.0, 35.0), the faces
    largest first, an empty entry ('8,,35') keeping that face's estimate."""
    if value is None or not isinstance(value, str):
        return value
    from faceage.age_groups import check_target_age

    ages: list[float | None] = []
    for part in value.split(","):
        if not part.strip() and "," in value:
            ages.append(None)
            continue
        try:
            ages.append(check_target_age(float(part), "age at the photo"))
        except ValueError as error:
            reason = f"{part.strip()!r} is not a number" if "could not convert" in str(error) else str(error)
            raise click.BadParameter(f"expected an age or comma-separated ages such as 8 or 8,35: {reason}") from None
    return ages[0] if len(ages) == 1 else tuple(ages)


@dataclass(frozen=True)
class Job:
    """One input photo and where its outputs go."""

    source: Path
    out_dir: Path
    from_folder: bool  # resume (skip done outputs) applies to folder inputs
    name: str = ""  # the outputs' stem: the source's, unless another input of the same folder shares it

    @property
    def stem(self) -> str:
        return self.name or self.source.stem

    @property
    def suffix(self) -> str:
        suffix = self.source.suffix.lower()
        return suffix if suffix in KEEP_SUFFIXES else ".png"

    def age_path(self, age: float) -> Path:
        return self.out_dir / f"{self.stem}_age{age_label(age)}{self.suffix}"

    def strip_path(self, face: int | None) -> Path:
        return self.out_dir / f"{self.stem}{_face_part(face)}_strip{self.suffix}"

    def animation_path(self, face: int | None, suffix: str) -> Path:
        return self.out_dir / f"{self.stem}{_face_part(face)}_progression{suffix}"


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
    source_age: float | tuple[float | None, ...] | None = None

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


@dataclass(frozen=True)
class ScanSkip:
    """Something a folder scan did not take, and why."""

    path: str
    reason: str


def collect_jobs(paths: tuple[Path, ...], out_dir: Path | None, skips: list[ScanSkip] | None = None) -> list[Job]:
    """Files as given; folders expanded to their images (recursive, sorted, hidden names and
    anything under ``out_dir`` left out). Each source appears once; inputs that would share output
    names get distinct ones. What a scan passes over for a reason worth telling (a symlink loop, a
    dangling link, an unreadable folder, a pipe, an image faceage made) is appended to ``skips``."""
    jobs: dict[Path, Job] = {}
    skips = [] if skips is None else skips
    out_resolved = out_dir.resolve() if out_dir is not None else None
    for path in paths:
        if path.is_dir():
            assert out_dir is not None  # checked by the command
            root = path.resolve()
            for file in _scan(path, skips):
                relative = file.relative_to(path)
                if out_resolved is not None and out_resolved != root and out_resolved in file.resolve().parents:
                    continue  # our own outputs when OUT is inside the folder
                if _made_by_faceage(file):
                    skips.append(ScanSkip(str(file), "made by faceage (its provenance says so); not aged again"))
                    continue
                jobs.setdefault(file.resolve(), Job(file, out_dir / relative.parent, True))
        else:
            jobs.setdefault(path.resolve(), Job(path, out_dir if out_dir is not None else path.parent, False))
    return _unique_names(list(jobs.values()))


def _scan(folder: Path, skips: list[ScanSkip]) -> list[Path]:
    """Image files under ``folder`` (sorted, hidden names left out), following folder links once."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def walk(current: Path) -> None:
        try:
            info = current.stat()
            key = (info.st_dev, info.st_ino)
            if key in seen:
                skips.append(ScanSkip(str(current), "symlink loop (a folder already scanned)"))
                return
            seen.add(key)
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as error:
            skips.append(ScanSkip(str(current), f"cannot list folder ({error.strerror or error})"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files, and temp files of an interrupted atomic write
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                target = entry.stat() if entry.is_symlink() else None
            except OSError as error:  # dangling link, or a link loop of its own
                if entry.is_symlink():
                    skips.append(ScanSkip(str(path), f"broken symlink ({error.strerror or error})"))
                continue
            if is_dir:
                walk(path)
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            mode = target.st_mode if target is not None else entry.stat(follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                skips.append(ScanSkip(str(path), "not a regular file (a pipe, device or socket)"))
                continue
            found.append(path)

    walk(folder)
    return found


def _made_by_faceage(path: Path) -> bool:
    """Whether ``path`` carries faceage provenance (an output of an earlier run lying among the inputs)."""
    from faceage.imageio import read_metadata

    try:
        return read_metadata(path).get("faceage:synthetic") == "true"
    except ImageReadError:
        return False


def _unique_names(jobs: list[Job]) -> list[Job]:
    """Give inputs that would write the same outputs (same stem, same output folder) distinct stems:
    the source's format is added (``same_bmp``, ``same_tif``), then a counter if still needed."""

    def key(job: Job, stem: str) -> tuple[str, str]:
        return (os.path.normcase(str(job.out_dir.resolve())), stem.casefold())

    groups: dict[tuple[str, str], int] = {}
    for job in jobs:
        groups[key(job, job.source.stem)] = groups.get(key(job, job.source.stem), 0) + 1
    taken = {key(job, job.source.stem) for job in jobs if groups[key(job, job.source.stem)] == 1}
    named = []
    for job in jobs:
        if groups[key(job, job.source.stem)] == 1:
            named.append(job)
            continue
        stem = f"{job.source.stem}_{job.source.suffix.lstrip('.').lower() or 'file'}"
        candidate, n = stem, 1
        while key(job, candidate) in taken:
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(key(job, candidate))
        named.append(Job(job.source, job.out_dir, job.from_folder, candidate))
    return named


def _provenance(info: dict, results, job: Job) -> dict:
    """``result_provenance`` plus the input's file name (what lets a rerun tell its own outputs)."""
    return {**result_provenance(info, results), "faceage:source": job.source.name}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> dict:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


class _Record:
    """``OUT/.faceage-batch.jsonl``: what produced each output, one JSON line per finished input.

    Appended and fsynced as each input finishes (a torn last line from a crash is ignored), so resume
    can tell a finished input from one that changed since, or whose outputs were cut short or replaced.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        if path is None:
            return
        try:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self.entries[entry["input"]] = entry
                    except (ValueError, KeyError, TypeError):
                        continue
        except (OSError, UnicodeDecodeError):
            pass

    def done(self, job: Job, settings: dict, expected: list[Path]) -> bool:
        """Whether ``job`` finished with ``settings`` from the input as it is now, outputs intact."""
        entry = self.entries.get(str(job.source.resolve()))
        try:
            if entry is None or entry.get("settings") != settings or entry.get("source") != _fingerprint(job.source):
                return False
            outputs = entry["outputs"]
            if any(str(path.resolve()) not in outputs for path in expected):
                return False
            return all(
                os.path.getsize(name) == out["size"] and _sha256(Path(name)) == out["sha256"]
                for name, out in outputs.items()
            )
        except (OSError, KeyError, TypeError):
            return False

    def owns(self, job: Job, path: Path) -> bool:
        """Whether the batch record says ``path`` was written for ``job``."""
        entry = self.entries.get(str(job.source.resolve()))
        return entry is not None and str(path.resolve()) in entry.get("outputs", {})

    def rows(self, job: Job) -> list[dict]:
        entry = self.entries.get(str(job.source.resolve()))
        return [{**row, "file": str(job.source)} for row in (entry or {}).get("rows", [])]

    def add(self, job: Job, source: dict, settings: dict, outputs: list[str], rows: list[dict]) -> None:
        entry = {
            "input": str(job.source.resolve()),
            "source": source,
            "settings": settings,
            "outputs": {
                str(Path(p).resolve()): {"size": os.path.getsize(p), "sha256": _sha256(Path(p))} for p in outputs
            },
            "rows": rows,
        }
        self.entries[str(job.source.resolve())] = entry
        if self.path is not None:
            _append(self.path, json.dumps(entry, ensure_ascii=False) + "\n")


def _append(path: Path, text: str) -> None:
    """Append ``text`` and fsync; a write error becomes an ``ImageWriteError`` (fatal when no space)."""
    from faceage.imageio import write_error

    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, os.fstat(fd).st_size - written)  # leave no torn line behind
                raise OSError(28, os.strerror(28))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None


class _Writer:
    """Writes outputs atomically, never onto an input, never twice to one path in a run, and never
    over a file faceage did not make from the same input (unless ``overwrite``)."""

    def __init__(self, protect: set[str], record: _Record | None = None, overwrite: bool = False) -> None:
        self.protect = protect
        self.record = record or _Record(None)
        self.overwrite = overwrite
        self.claimed: dict[Path, str] = {}
        self.images: dict[str, list[Path]] = {}  # per input: its image outputs (they vouch for its MP4)

    def check(self, path: Path, job: Job) -> None:
        """Raise ``ImageWriteError`` when ``path`` may not be written for ``job`` (before any work)."""
        key = path.resolve()
        other = self.claimed.get(key)
        if other is not None and other != str(job.source):
            raise ImageWriteError(
                f"{job.source.name}: output {path} was already written for {other} in this run; "
                "rename one of the inputs"
            )
        if str(key) in self.protect:
            raise ImageWriteError(
                f"{path.name}: refusing to overwrite an input image ({path}); choose another output folder"
            )
        if self.overwrite or other is not None or not os.path.lexists(path) or self.record.owns(job, path):
            return
        if path.suffix.lower() == ".mp4":
            # a video carries no provenance: it is ours when the images written beside it say so
            images = [p for p in self.images.get(str(job.source), []) if p.suffix.lower() != ".mp4"]
            if any(p.is_file() and _made_from(p, job.source) for p in images):
                return
        elif _made_from(path, job.source):
            return
        raise ImageWriteError(
            f"{job.source.name}: {path} already exists and faceage did not make it from "
            "this input; left alone (--overwrite replaces it, or choose another -o)"
        )

    def claim(self, path: Path, job: Job) -> Path:
        self.check(path, job)
        self.claimed[path.resolve()] = str(job.source)
        return path

    def image(self, path: Path, job: Job, rgb, metadata: dict) -> str:
        from faceage.imageio import save_image

        return str(save_image(self.claim(path, job), rgb, metadata=metadata))

    def gif(self, path: Path, job: Job, frames, labels, metadata: dict) -> str:
        from faceage.outputs.progression import save_gif

        return str(save_gif(self.claim(path, job), frames, labels, GIF_FRAME_MS, metadata=metadata))

    def mp4(self, path: Path, job: Job, frames, labels) -> str:
        from faceage.outputs.progression import save_mp4

        return str(save_mp4(self.claim(path, job), frames, labels, fps=1000.0 / GIF_FRAME_MS))


def _made_from(path: Path, source: Path) -> bool:
    """Whether the image at ``path`` carries faceage provenance naming ``source`` (or, written before
    faceage recorded sources, any faceage provenance)."""
    from faceage.imageio import read_metadata

    try:
        meta = read_metadata(path)
    except ImageReadError:
        return False
    return meta.get("faceage:synthetic") == "true" and meta.get("faceage:source", source.name) == source.name


def _age_file(job: Job, ager, opts: Options, writer: _Writer) -> FileResult:
    from faceage.imageio import load_image

    writer.images[str(job.source)] = opts.expected(job)
    for expected in opts.expected(job):  # refuse before the work, not after the first output
        writer.check(expected, job)
    rgb = load_image(job.source)
    results = ager.age(rgb, to=list(opts.ages), source_age=opts.source_age)
    info = ager.method.describe()
    outputs: list[str] = []
    ages, rows = [], []
    for result in results:
        path = writer.image(job.age_path(result.requested_age), job, result.image, _provenance(info, [result], job))
        outputs.append(path)
        ages.append({"output": path, **result.to_dict()})
        rows += [{"file": str(job.source), **_row(face)} for face in result.faces]
    if opts.progression:
        outputs += _progressions(job, rgb, results, opts, writer, info)
    return FileResult(str(job.source), outputs, ages, rows)


def _progressions(job: Job, rgb, results, opts: Options, writer: _Writer, info: dict) -> list[str]:
    from faceage.outputs.progression import progression_strip

    metadata = _provenance(info, results, job)
    written = []
    # with --crop one progression per face, of its aligned crop
    for face in range(len(results[0].faces)) if opts.crop else [None]:
        frames, labels = progression_frames(results, rgb, face)
        if opts.strip:
            strip = progression_strip(frames, labels)
            written.append(writer.image(job.strip_path(face), job, strip, metadata))
        if opts.gif:
            written.append(writer.gif(job.animation_path(face, ".gif"), job, frames, labels, metadata))
        if opts.mp4:
            written.append(writer.mp4(job.animation_path(face, ".mp4"), job, frames, labels))
    return written


def _row(face) -> dict:
    d = face.to_dict()
    return {"face": d["index"], **{k: ("" if d[k] is None else d[k]) for k in SUMMARY_FIELDS[2:]}}


def _summary_is_ours(path: Path) -> bool:
    """Whether ``path`` is missing, empty, or a summary this command wrote (its header)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    return not first or tuple(next(csv.reader([first]), [])) in (SUMMARY_FIELDS, _OLD_SUMMARY_FIELDS)


def _csv_text(rows: list[dict], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _append_summary(path: Path, rows: list[dict]) -> None:
    """Add one file's rows as it finishes (the header first on a new summary)."""
    from faceage.imageio import write_error

    try:
        new = not path.is_file() or path.stat().st_size == 0
    except OSError as exc:
        raise write_error(path, exc) from None
    _append(path, _csv_text(rows, header=new))


def _write_summary(path: Path, jobs: list[Job], rows_of) -> None:
    """Rewrite the summary in input order: one block of rows per finished input, old and new."""
    from faceage.atomic import write_text_atomic
    from faceage.imageio import write_error

    rows = [row for job in jobs for row in rows_of(job)]
    try:
        write_text_atomic(path, _csv_text(rows, header=True))
    except OSError as exc:
        raise write_error(path, exc) from None


def _face_line(face: dict) -> str:
    given = face.get("given_age")
    start = (
        f"age {face['source_age']:.1f}"
        if given is None
        else f"age {given:g} (given; estimate {face['estimated_age']:.1f})"
    )
    text = f"  face {face['index']}: {start} -> target {face['target_age']:g}"
    if face["reached_age"] is None:
        return text + " (not evaluated)"
    same = "same person" if face["same_person"] else "NOT the same person"
    return text + f": reached {face['reached_age']:.1f}, identity {face['identity']:.2f} ({same}), {face['ms']:.0f} ms"


@click.command("age")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--to",
    "ages",
    required=True,
    callback=parse_ages,
    metavar="AGE[,AGE...]",
    help="Target age, or several: 60 or 10,30,50,70 (years, 0-120).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (created if missing). Default: beside each input file; required for folders.",
)
@click.option(
    "--from",
    "source_age",
    callback=parse_known_ages,
    metavar="AGE[,AGE...]",
    default=None,
    help="The age at the photo, when known: the method starts from it instead of the estimate "
    "(both are reported). One age for every face, or one per face, largest first (8,35).",
)
@click.option("--method", **method_option(), help=method_help())
@set_option
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Weights file for the method instead of the shipped one.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Where the method runs.")
@click.option(
    "--max-faces", type=click.IntRange(min=1), default=None, help="Age at most N faces per photo (largest first)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--strip", is_flag=True, help="Also write a labelled progression strip (original + every age).")
@click.option("--gif", is_flag=True, help="Also write an animated GIF of the progression.")
@click.option("--mp4", is_flag=True, help="Also write the progression as an MP4 video (no metadata inside).")
@click.option("--crop", is_flag=True, help="Progressions of each aligned face instead of the whole photo.")
@click.option("--no-eval", is_flag=True, help="Skip measuring reached age and identity (faster).")
@click.option(
    "--overwrite", is_flag=True, help="Redo inputs already done, and replace files that exist at output names."
)
def age(
    paths: tuple[Path, ...],
    ages: tuple[float, ...],
    out_dir: Path | None,
    source_age: float | tuple[float | None, ...] | None,
    method: str,
    sets: dict[str, str],
    weights: Path | None,
    device: str,
    max_faces: int | None,
    as_json: bool,
    strip: bool,
    gif: bool,
    mp4: bool,
    crop: bool,
    no_eval: bool,
    overwrite: bool,
) -> None:
    """Age every face in each PHOTO (or every photo under a folder) to --to years.

    Prints, per face: estimated source age, target, age reached and identity similarity (both
    measured by independent models on the output).
    """
    from tqdm import tqdm

    sets = parse_sets(None, None, sets)  # ctx.invoke (demo) passes the unparsed default
    if crop and not (strip or gif or mp4):
        raise click.UsageError("--crop applies to the progression outputs: add --strip, --gif or --mp4")
    folders = [str(p) for p in paths if p.is_dir()]
    if folders and out_dir is None:
        raise click.UsageError(f"folder input {folders[0]} needs an output folder: add -o OUT")
    opts = Options(tuple(ages), strip, gif, mp4, crop, overwrite, source_age)
    scan_skips: list[ScanSkip] = []
    jobs = collect_jobs(paths, out_dir, scan_skips)
    if not jobs:
        raise click.UsageError(_nothing_found(folders, out_dir, scan_skips))
    summary = record = None
    if folders:
        assert out_dir is not None  # checked above: folder inputs need -o
        summary, record = out_dir / SUMMARY_NAME, _Record(out_dir / RECORD_NAME)
        if not _summary_is_ours(summary):
            raise click.UsageError(f"{summary} exists and is not a faceage summary; move it away or choose another -o")
    record = record or _Record(None)
    settings = {
        "method": method,
        "weights": None if weights is None else str(weights.resolve()),
        "ages": list(ages),
        "strip": strip,
        "gif": gif,
        "mp4": mp4,
        "crop": crop,
        "max_faces": max_faces,
        "options": sets,
        "source_age": list(source_age) if isinstance(source_age, tuple) else source_age,
    }

    todo, skipped = [], set()
    for job in jobs:
        if job.from_folder and not overwrite and record.done(job, settings, opts.expected(job)):
            skipped.add(str(job.source))
        else:
            todo.append(job)

    from faceage.methods.engine import Ager
    from faceage.methods.registry import load_method

    # nothing to do (a finished batch run again) needs no models
    ager = (
        Ager(load_method(method, device=device, weights=weights, **sets), evaluate=not no_eval, max_faces=max_faces)
        if todo
        else None
    )
    writer = _Writer({str(job.source.resolve()) for job in jobs}, record, overwrite)
    results: list[FileResult] = []
    failures: list[FileFailure] = []

    def one(job: Job) -> FileResult:
        source = _fingerprint(job.source)  # before reading: a change while we work means redo next time
        result = _age_file(job, ager, opts, writer)
        if summary is not None:
            record.add(job, source, settings, result.outputs, result.rows)
            _append_summary(summary, result.rows)
        if not as_json:
            for entry in result.ages:
                tqdm.write(f"{job.source} -> {entry['output']}")
                for note in (entry["warning"], entry["faces_note"]):
                    if note:
                        tqdm.write(f"  note: {note}")
                for face in entry["faces"]:
                    tqdm.write(_face_line(face))
        return result

    bar = tqdm(todo, desc="aging", unit="photo", disable=None if len(todo) > 1 else True)
    stopped: OutputUnwritableError | None = None
    try:
        for job in bar:
            try:
                results.append(one(job))
            except OutputUnwritableError as error:
                stopped = error  # every other file would fail the same way
                break
            except FaceageError as error:
                failures.append(FileFailure(str(job.source), str(error)))
            except OSError as error:  # the input vanished or changed type under us
                failures.append(FileFailure(str(job.source), f"cannot read the file ({error.strerror or error})"))
    finally:
        bar.close()
        if summary is not None:
            done = {r.file: r.rows for r in results}
            try:
                _write_summary(
                    summary,
                    jobs,
                    lambda job: done.get(str(job.source)) or (record.rows(job) if str(job.source) in skipped else []),
                )
            except ImageWriteError as error:
                click.echo(f"error: {error}; {summary} holds the rows appended so far", err=True)

    if as_json:
        payload = {
            "method": method,
            "ages": list(ages),
            "results": [{"file": r.file, "outputs": r.outputs, "ages": r.ages} for r in results],
            "skipped": sorted(skipped),
            "scan_skipped": [skip.__dict__ for skip in scan_skips],
            "failures": [f.__dict__ for f in failures],
            "stopped": None if stopped is None else str(stopped),
            "summary": None if summary is None else str(summary),
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        for skip in scan_skips:
            click.echo(f"skipped {skip.path}: {skip.reason}", err=True)
        if skipped:
            click.echo(f"skipped {len(skipped)} of {len(jobs)} files already done (--overwrite to redo)")
        if summary is not None:
            click.echo(f"summary: {summary}")
    if stopped is not None:
        try:
            report_failures(failures, len(jobs))  # the other files' reasons first
        except SystemExit:
            pass
        left = len(todo) - len(results) - len(failures)
        click.echo(
            f"error: {stopped}; stopped with {left} of {len(todo)} files not done "
            "(free space or fix the folder, then run the same command again to resume)",
            err=True,
        )
        raise SystemExit(1)
    report_failures(failures, len(jobs))


def _nothing_found(folders: list[str], out_dir: Path | None, skips: list[ScanSkip]) -> str:
    """Why a folder run has no input: say what the scan passed over instead of just 'no images'."""
    text = f"no images to age in {', '.join(folders)}"
    own = sum(1 for skip in skips if skip.reason.startswith("made by faceage"))
    if own:
        text += f": {own} image(s) there are faceage outputs (not aged again)"
    other = [skip for skip in skips if not skip.reason.startswith("made by faceage")]
    if other:
        text += "; skipped " + "; ".join(f"{skip.path}: {skip.reason}" for skip in other[:3])
    if out_dir is not None and any(Path(f).resolve() in out_dir.resolve().parents for f in folders):
        text += f" (files under the output folder {out_dir} are never inputs)"
    return text
