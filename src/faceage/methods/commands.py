"""``faceage age``: age every face in photos, folders or lists of photos, with a per-face report.

Outputs go to ``OUT/<stem>_age<N>.<ext>`` (JPEG and PNG inputs keep their format, anything else
becomes PNG), written atomically (complete or absent) and never onto an input. Inputs whose names
would give the same outputs (``same.bmp``, ``same.tif``) get their format in the name
(``same_bmp_age60.png``). An existing file at an output name is replaced only when faceage made it
from the same input (the batch record says so, or its provenance's ``faceage:source_id``, a hash of
the input's path) or with ``--overwrite``; otherwise that input fails with a one-line reason.
File names may hold any bytes: they are stored escaped (``faceage.filenames``) in metadata, the
record and the summary, and printed escaped.

A folder input is searched recursively (sorted); its outputs mirror its subfolders under ``-o OUT``.
What was skipped by the scan (symlink loops, dangling links, unreadable folders, pipes, faceage's own
outputs, a count of files not named as images) is listed. ``OUT/.faceage-batch.jsonl`` records, per
finished input, its size and mtime, the settings, and the size and SHA-256 of every output; a rerun
skips an input (resume) only when all of that still matches, unless ``--overwrite``.
``OUT/summary.csv`` holds one row per face and age: appended as each file finishes, and rewritten
at the end (earlier batches' rows whose outputs are still there, then this run's in input order),
so it is complete after an interrupt and a resume. Printing never decides what is written: a
closed stdout only silences it. Failing files are listed at the end; the exit code is 1 when
every input failed, or when a fault makes every write fail (disk full, read-only folder): then the
run stops at once, after saving the summary so far.

A list file (``.txt``: one path a line; ``.csv`` / ``.parquet``: a ``path`` column) names photos
the way a folder holds them: relative paths are relative to the list's folder, outputs mirror them
under ``-o OUT``, and resume and the summary apply.

Engines (``run_batch``): ``local`` ages in this process; ``ray`` ages on an actor pool of a Ray
cluster (``faceage.ray_engine``), the workers reading, aging and writing each photo while this
process alone keeps the batch record and the summary. Everything else is one code path.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click

from faceage.checksum import sha256_file
from faceage.cli_options import FileFailure, report_failures, say
from faceage.errors import FaceageError, ImageReadError, ImageWriteError, OutputUnwritableError
from faceage.filenames import escape_name, shown, unescape_name
from faceage.methods.registry import method_help, method_option, parse_sets, set_option
from faceage.outputs.results import age_label, progression_frames, result_provenance

# what a folder scan picks up: the photo formats Pillow reads out of the box (the other files of a
# scanned folder are counted in one line of what the scan passed over)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif", ".avif"}
    | {".ico", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".pcx", ".qoi"}
)
# outputs keep these formats; other inputs (lossless or not writable by us) become PNG
KEEP_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# an input with one of these suffixes is a list of photos (one path a line, or a `path` column)
LIST_SUFFIXES = frozenset({".txt", ".csv", ".parquet"})
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
    """``--to``: '60' or '10,30,50,70' -> (60.0,) / (10.0, 30.0, 50.0, 70.0); each in 0..120, to one
    decimal (``plain_age``: '-0' is 0, '42.54' is 42.5), each once."""
    if value is None or isinstance(value, tuple):  # tuple: already parsed (ctx.invoke)
        return value
    from faceage.age_groups import check_target_age, plain_age  # here: numpy is not needed for --help

    example = "an age or comma-separated ages such as 60 or 10,30,50,70"
    ages = []
    for part in value.split(","):
        try:
            ages.append(plain_age(check_target_age(float(part))))
        except ValueError as error:
            reason = str(error) if part.strip() else "empty entry"
            if "could not convert" in reason:
                reason = f"{part.strip()!r} is not a number"
            raise click.BadParameter(f"expected {example}: {reason}") from None
    if len(set(ages)) != len(ages):
        raise click.BadParameter(f"each age once (to one decimal), got {value}")
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
        if is_list_file(path):
            assert out_dir is not None  # checked by the command
            for file in read_list(path):
                relative = file.relative_to(path.parent) if path.parent in file.parents else Path(file.name)
                jobs.setdefault(file.resolve(), Job(file, out_dir / relative.parent, True))
        elif path.is_dir():
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


def is_list_file(path: Path) -> bool:
    """Whether input ``path`` is a list of photos (``.txt``/``.csv``/``.parquet``), not a photo."""
    return path.suffix.lower() in LIST_SUFFIXES and path.is_file()


def read_list(path: Path) -> list[Path]:
    """The photos a list file names: one path a line (``.txt``; blank lines and ``#`` comments
    skipped) or the ``path`` column of a CSV or Parquet table. Relative paths are relative to the
    list's folder. ``FaceageError`` with one line when the list cannot be read."""
    try:
        if path.suffix.lower() == ".txt":
            lines = path.read_text(encoding="utf-8").splitlines()
            names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        elif path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                table = csv.DictReader(handle)
                if "path" not in (table.fieldnames or []):
                    raise FaceageError(f"{path}: a CSV list needs a 'path' column (found {table.fieldnames})")
                names = [row["path"] for row in table if row["path"]]
        else:
            names = _parquet_paths(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FaceageError(f"{path}: cannot read the list ({error})") from None
    return [name if name.is_absolute() else path.parent / name for name in map(Path, names)]


def _parquet_paths(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise FaceageError(f"{path}: reading a Parquet list needs pyarrow: pip install 'faceage[ray]'") from None
    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises its own types for a damaged file
        raise FaceageError(f"{path}: not a readable Parquet table ({error})") from None
    if "path" not in table.column_names:
        raise FaceageError(f"{path}: a Parquet list needs a 'path' column (found {table.column_names})")
    return [str(name) for name in table.column("path").to_pylist() if name]


def _scan(folder: Path, skips: list[ScanSkip]) -> list[Path]:
    """Image files under ``folder`` (sorted, hidden names left out), following folder links once.
    Files whose names are not of an image format are counted in one entry of ``skips``."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    others: dict[str, int] = {}  # suffix -> files passed over for their name

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
                kind = path.suffix.lower() or "no suffix"
                others[kind] = others.get(kind, 0) + 1
                continue
            mode = target.st_mode if target is not None else entry.stat(follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                skips.append(ScanSkip(str(path), "not a regular file (a pipe, device or socket)"))
                continue
            found.append(path)

    walk(folder)
    if others:
        count = sum(others.values())
        kinds = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
        what = "1 file not named as an image" if count == 1 else f"{count} files not named as images"
        skips.append(ScanSkip(str(folder), f"{what} ({kinds}); name a file directly to try it"))
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
    the source's format is added (``same_bmp``, ``same_tif``), then a counter if still needed. Case
    is ignored, in folders too: the output disk may ignore it (``a/x.jpg`` and ``A/x.jpg``)."""

    def key(job: Job, stem: str) -> tuple[str, str]:
        return (os.path.normcase(str(job.out_dir.resolve())).casefold(), stem.casefold())

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
    """``result_provenance`` plus the input's file name (escaped: any byte may be in a name) and
    ``_source_id``, what lets a rerun tell its own outputs from those of another input of that name."""
    return {
        **result_provenance(info, results),
        "faceage:source": escape_name(job.source.name),
        "faceage:source_id": _source_id(job.source),
    }


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
                os.path.getsize(name) == out["size"] and sha256_file(name) == out["sha256"]
                for name, out in outputs.items()
            )
        except (OSError, KeyError, TypeError):
            return False

    def owns(self, job: Job, path: Path) -> bool:
        """Whether the batch record says ``path`` was written for ``job``."""
        entry = self.entries.get(str(job.source.resolve()))
        return entry is not None and str(path.resolve()) in entry.get("outputs", {})

    def owned(self, job: Job) -> list[str]:
        """The outputs the batch record says were written for ``job`` (what a Ray worker may replace)."""
        return list((self.entries.get(str(job.source.resolve())) or {}).get("outputs", {}))

    def rows(self, job: Job) -> list[dict]:
        entry = self.entries.get(str(job.source.resolve()))
        return [{**row, "file": escape_name(job.source)} for row in (entry or {}).get("rows", [])]

    def other_rows(self, jobs: list[Job]) -> list[dict]:
        """Rows of the inputs recorded by earlier runs that are not among ``jobs`` (a second batch into
        the same folder), in the order they were recorded, for those whose outputs are all still there."""
        current = {str(job.source.resolve()) for job in jobs}
        return [
            row
            for name, entry in self.entries.items()
            if name not in current and all(os.path.isfile(out) for out in entry.get("outputs", {}))
            for row in entry.get("rows", [])
        ]

    def add(self, job: Job, source: dict, settings: dict, outputs: list[str], rows: list[dict]) -> None:
        entry = {
            "input": str(job.source.resolve()),
            "source": source,
            "settings": settings,
            "outputs": {
                str(Path(p).resolve()): {"size": os.path.getsize(p), "sha256": sha256_file(p)} for p in outputs
            },
            "rows": rows,
        }
        self.entries[str(job.source.resolve())] = entry
        if self.path is not None:
            _append(self.path, json.dumps(entry) + "\n")  # ASCII: undecodable bytes of a name as \udcxx


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
            if any(p.is_file() and _made_from(_faceage_metadata(p), job.source) for p in images):
                return
        else:
            meta = _faceage_metadata(path)
            if _made_from(meta, job.source):
                return
            if meta is not None:
                raise ImageWriteError(
                    f"{shown(job.source.name)}: {shown(path)} already exists and faceage made it from another "
                    f"input ({shown(unescape_name(meta.get('faceage:source', '?')))} elsewhere); left alone "
                    "(--overwrite replaces it, or choose another -o)"
                )
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


def _faceage_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of the image at ``path`` when faceage made it, else None."""
    from faceage.imageio import read_metadata

    try:
        meta = read_metadata(path)
    except ImageReadError:
        return None
    return meta if meta.get("faceage:synthetic") == "true" else None


def _made_from(meta: dict[str, str] | None, source: Path) -> bool:
    """Whether faceage metadata ``meta`` says its image was made from ``source``: the same input path
    (``faceage:source_id``); for outputs written before that was recorded, an input of the same name;
    before names were recorded, any input."""
    if meta is None:
        return False
    if "faceage:source_id" in meta:
        return meta["faceage:source_id"] == _source_id(source)
    return meta.get("faceage:source", escape_name(source.name)) == escape_name(source.name)


def _source_id(source: Path) -> str:
    """What tells one input from another of the same name, without writing its path into the image:
    the first 16 hex digits of the SHA-256 of its absolute path."""
    return hashlib.sha256(os.fsencode(str(source.resolve()))).hexdigest()[:16]


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
        rows += [{"file": escape_name(job.source), **_row(face)} for face in result.faces]
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


def _write_summary(path: Path, earlier: list[dict], jobs: list[Job], rows_of) -> None:
    """Rewrite the summary: the ``earlier`` rows (inputs of other runs into this folder), then this
    run's in input order, one block of rows per finished input, old and new."""
    from faceage.atomic import write_text_atomic
    from faceage.imageio import write_error

    rows = earlier + [row for job in jobs for row in rows_of(job)]
    try:
        write_text_atomic(path, _csv_text(rows, header=True))
    except OSError as exc:
        raise write_error(path, exc) from None


def _summary_state(path: Path) -> str:
    """What is true of the summary after it could not be rewritten (for the error line)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = sum(1 for _ in csv.DictReader(handle))
    except FileNotFoundError:
        return "no summary was written"
    except (OSError, UnicodeDecodeError, csv.Error):
        return f"{path} could not be rewritten and cannot be read back"
    return f"{path} was not rewritten; it holds {rows} row(s) written before the fault"


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


class BatchInputError(FaceageError):
    """The inputs or options of a batch run do not fit together (the CLI shows it as a usage error)."""


@dataclass
class BatchReport:
    """What one batch run did: each finished input's result, and what was skipped, failed or stopped it."""

    jobs: int  # inputs found
    todo: int  # inputs this run set out to age (the others were done before)
    results: list[FileResult]
    skipped: list[str]  # inputs done by an earlier run with the same settings (resume)
    scan_skips: list[ScanSkip]
    failures: list[FileFailure]
    stopped: str | None  # why no output could be written at all, when that ended the run early
    summary: Path | None
    faces: int = 0  # faces in the finished photos
    seconds: float = 0.0


@dataclass(frozen=True)
class _Outcome:
    """What aging one input gave, on whichever process aged it (picklable: Ray workers send it back)."""

    result: FileResult | None = None
    source: dict | None = None  # the input's size and mtime before it was read
    failure: str | None = None
    stopped: str | None = None


def _process(job: Job, ager, opts: Options, writer: _Writer) -> _Outcome:
    """Age one input and write its outputs; every per-file error becomes the outcome, not a raise."""
    try:
        source = _fingerprint(job.source)  # before reading: a change while we work means redo next time
        return _Outcome(_age_file(job, ager, opts, writer), source)
    except OutputUnwritableError as error:  # every other file would fail the same way
        return _Outcome(stopped=str(error))
    except FaceageError as error:
        return _Outcome(failure=str(error))
    except OSError as error:  # the input vanished or changed type under us
        return _Outcome(failure=f"cannot read the file ({error.strerror or error})")


@dataclass(frozen=True)
class _Loader:
    """How to build the ``Ager`` (picklable, so each Ray worker loads the method once itself)."""

    method: str
    weights: Path | None
    device: str
    evaluate: bool
    max_faces: int | None
    options: tuple[tuple[str, object], ...] = ()  # the method's --set options, as (KEY, VALUE) pairs

    def __call__(self):
        from faceage.methods.engine import Ager
        from faceage.methods.registry import load_method

        method = load_method(self.method, device=self.device, weights=self.weights, **dict(self.options))
        return Ager(method, evaluate=self.evaluate, max_faces=self.max_faces)


@dataclass(frozen=True)
class _RayWorker:
    """Run once per Ray actor: load the method and return the function that ages one job row there.
    The driver alone reads and appends the batch record; each row carries what the record says of
    its own outputs (``owned``), so no actor reads the record of a million photos."""

    loader: _Loader
    opts: Options
    protect: frozenset[str]
    threads: int

    def __call__(self):
        import torch

        torch.set_num_threads(self.threads)  # the CPUs Ray gave this actor, not the whole node's
        ager = self.loader()
        writer = _Writer(set(self.protect), _Record(None), self.opts.overwrite)

        def one(row: dict) -> _Outcome:
            job = _job_of(row)
            owned: dict[str, dict] = dict.fromkeys(json.loads(str(row["owned"])), {})
            writer.record.entries = {str(job.source.resolve()): {"outputs": owned}}
            return _process(job, ager, self.opts, writer)

        return one


# what one aging process holds besides the method's weights: torch, the detector, the evaluators,
# one decoded photo and its results (`faceage age` of the default method on 200x200 photos peaks at
# 0.82 GiB resident; a 12 MP photo adds its decoded copies, 36 MB each). Ray schedules by it; it is
# not a limit
ACTOR_BASE_MEMORY = 1 << 30


def _actor_memory(method: str, weights: Path | None) -> int:
    """Bytes a Ray actor reserves: the base plus four times the method's weight files (loaded
    weights, their float copies and the activations grow with them)."""
    from faceage.assets import WEIGHTS_DIR
    from faceage.methods.registry import METHODS

    shipped = METHODS[method].shipped if method in METHODS else ()
    files = [weights] if weights is not None else [WEIGHTS_DIR / name for name in shipped]
    return ACTOR_BASE_MEMORY + 4 * sum(path.stat().st_size for path in files if path.is_file())


def _row_of(job: Job, record: _Record) -> dict:
    """A job as a Ray Data row: paths escaped (``escape_name``), since a name may hold any bytes and
    Arrow strings must be UTF-8."""
    return {
        "source": escape_name(job.source),
        "out_dir": escape_name(job.out_dir),
        "from_folder": job.from_folder,
        "name": escape_name(job.name),
        "owned": json.dumps(record.owned(job)),  # ASCII: undecodable bytes as \udcxx
    }


def _job_of(row: dict) -> Job:
    return Job(
        Path(unescape_name(str(row["source"]))),
        Path(unescape_name(str(row["out_dir"]))),
        bool(row["from_folder"]),
        unescape_name(str(row["name"])),
    )


def run_batch(
    paths: tuple[Path, ...],
    ages: tuple[float, ...],
    out_dir: Path | None,
    *,
    method: str,
    sets: Mapping[str, object] | None = None,
    source_age: float | tuple[float | None, ...] | None = None,
    weights: Path | None = None,
    device: str = "cpu",
    max_faces: int | None = None,
    evaluate: bool = True,
    strip: bool = False,
    gif: bool = False,
    mp4: bool = False,
    crop: bool = False,
    overwrite: bool = False,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    on_result=None,
    progress: bool = True,
) -> BatchReport:
    """Age every input (files, folders, list files) with ``engine`` ("local": this process; "ray":
    an actor pool on a Ray cluster, ``faceage.ray_engine``). Both share everything but where the
    aging runs: the scan, the resume record, the writer's rules, the summary, the failures.

    ``sets`` are the method's options (``--set KEY=VALUE``); ``source_age`` the age at the photo when
    known (``--from``: one for every face, or one per face, largest first).
    ``on_result(job, result)`` is called in the driver as each input finishes. Raises
    ``BatchInputError`` for inputs and options that do not fit together.
    """
    from tqdm import tqdm

    from faceage.machine import check_device
    from faceage.methods.registry import where_it_runs

    device = check_device(device)  # an unknown or missing device: one line before any work
    if crop and not (strip or gif or mp4):
        raise BatchInputError("--crop applies to the progression outputs: add --strip, --gif or --mp4")
    batches = [str(p) for p in paths if p.is_dir() or is_list_file(p)]
    if batches and out_dir is None:
        kind = "list" if is_list_file(Path(batches[0])) else "folder"
        raise BatchInputError(f"{kind} input {batches[0]} needs an output folder: add -o OUT")
    sets = dict(sets or {})
    opts = Options(tuple(ages), strip, gif, mp4, crop, overwrite, source_age)
    scan_skips: list[ScanSkip] = []
    jobs = collect_jobs(paths, out_dir, scan_skips)
    if not jobs:
        raise BatchInputError(shown(_nothing_found(batches, out_dir, scan_skips)))
    note = where_it_runs(method, device)
    if note:
        say(f"note: {note}", err=True)
    summary = record = None
    if batches:
        assert out_dir is not None  # checked above: folder and list inputs need -o
        summary, record = out_dir / SUMMARY_NAME, _Record(out_dir / RECORD_NAME)
        if not _summary_is_ours(summary):
            raise BatchInputError(f"{summary} exists and is not a faceage summary; move it away or choose another -o")
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

    loader = _Loader(method, weights, device, evaluate, max_faces, tuple(sorted(sets.items())))
    protect = {str(job.source.resolve()) for job in jobs}
    if engine == "ray" and todo:
        from faceage.ray_engine import ray_map

        threads = 1  # one CPU per actor: on a 2-core node two actors beat one with two threads
        # a worker needs only the inputs that an output could land on: those inside an output folder
        folders = {str(job.out_dir.resolve()) for job in todo}
        exposed = frozenset(path for path in protect if os.path.dirname(path) in folders)
        worker = _RayWorker(loader, opts, exposed, threads)
        outputs = out_dir or todo[0].out_dir
        mapped = ray_map(
            [_row_of(job, record) for job in todo],
            worker,
            address=address,
            workers=workers,
            cpus=threads,
            memory=_actor_memory(method, weights),
            writable=outputs.resolve(),
        )
        outcomes = ((todo[index], outcome) for index, outcome in mapped)
    else:
        # nothing to do (a finished batch run again) needs no models
        ager = loader() if todo else None
        writer = _Writer(protect, record, overwrite)
        outcomes = ((job, _process(job, ager, opts, writer)) for job in todo)

    report = BatchReport(len(jobs), len(todo), [], sorted(skipped), scan_skips, [], None, summary)
    bar = tqdm(total=len(todo), desc="aging", unit="photo", disable=None if progress and len(todo) > 1 else True)
    started = time.monotonic()
    try:
        for job, outcome in outcomes:
            bar.update()
            if outcome.stopped is not None:
                report.stopped = outcome.stopped
                break
            if outcome.failure is not None or outcome.result is None:
                report.failures.append(FileFailure(str(job.source), outcome.failure or "no result"))
                continue
            result = outcome.result
            try:
                if summary is not None:
                    record.add(job, outcome.source or {}, settings, result.outputs, result.rows)
                    _append_summary(summary, result.rows)
            except OutputUnwritableError as error:
                report.stopped = str(error)
                break
            except FaceageError as error:
                report.failures.append(FileFailure(str(job.source), str(error)))
                continue
            report.results.append(result)
            report.faces += len(result.ages[0]["faces"]) if result.ages else 0
            report.seconds = time.monotonic() - started
            bar.set_postfix_str(f"{report.faces / max(report.seconds, 1e-9):.2f} faces/s", refresh=False)
            if on_result is not None:
                on_result(job, result)
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()  # the Ray engine's generator ends its pipeline (and the cluster it started)
        bar.close()
        report.seconds = time.monotonic() - started
        if summary is not None:
            done = {r.file: r.rows for r in report.results}
            try:
                _write_summary(
                    summary,
                    record.other_rows(jobs),
                    jobs,
                    lambda job: done.get(str(job.source)) or (record.rows(job) if str(job.source) in skipped else []),
                )
            except ImageWriteError as error:
                say(f"error: {error}; {_summary_state(summary)}", err=True)
    return report


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
    help="Output folder (created if missing). Default: beside each input file; required for folders and lists.",
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
    "--budget-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MS",
    help="Time per face for a method with sub-networks (student): the largest one whose measured time "
    "on this machine fits (timed once, then cached). Same as --set budget_ms=MS.",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Weights file for the method instead of the shipped one.",
)
@click.option("--device", default="cpu", help="Where the method runs: cpu, cuda or cuda:N.")
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
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    help="Where the aging runs: this process, or an actor pool on a Ray cluster (pip install 'faceage[ray]').",
)
@click.option(
    "--address",
    default=None,
    metavar="ADDR",
    help="--engine ray: the cluster to join (auto, HOST:PORT, ray://HOST:10001; default RAY_ADDRESS, "
    "else a local Ray started for this run). -o must be a folder every node can write.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="--engine ray: actors (default: one per cluster CPU)."
)
def age(
    paths: tuple[Path, ...],
    ages: tuple[float, ...],
    out_dir: Path | None,
    source_age: float | tuple[float | None, ...] | None,
    method: str,
    sets: dict[str, str],
    budget_ms: float | None,
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
    engine: str,
    address: str | None,
    workers: int | None,
) -> None:
    """Age every face in each PHOTO (or every photo under a folder or named in a list file: one
    path a line, or a CSV/Parquet `path` column) to --to years.

    Prints, per face: estimated source age, target, age reached and identity similarity (both
    measured by independent models on the output).
    """
    if engine == "local" and (address is not None or workers is not None):
        raise click.UsageError("--address and --workers apply to --engine ray")
    sets = parse_sets(None, None, sets)  # ctx.invoke (demo) passes the unparsed default
    if budget_ms is not None:
        sets = {**sets, "budget_ms": str(budget_ms)}

    def show(job: Job, result: FileResult) -> None:
        for entry in result.ages:
            say(f"{shown(job.source)} -> {shown(entry['output'])}")
            for note in (entry["warning"], entry["faces_note"]):
                if note:
                    say(f"  note: {note}")
            for face in entry["faces"]:
                say(_face_line(face))

    try:
        report = run_batch(
            paths,
            ages,
            out_dir,
            method=method,
            sets=sets,
            source_age=source_age,
            weights=weights,
            device=device,
            max_faces=max_faces,
            evaluate=not no_eval,
            strip=strip,
            gif=gif,
            mp4=mp4,
            crop=crop,
            overwrite=overwrite,
            engine=engine,
            address=address,
            workers=workers,
            on_result=None if as_json else show,
        )
    except BatchInputError as error:
        raise click.UsageError(shown(str(error))) from None
    skipped, summary, failures = report.skipped, report.summary, report.failures
    if as_json:
        payload = {
            "method": method,
            "ages": list(ages),
            "results": [{"file": r.file, "outputs": r.outputs, "ages": r.ages} for r in report.results],
            "skipped": skipped,
            "scan_skipped": [skip.__dict__ for skip in report.scan_skips],
            "failures": [f.__dict__ for f in failures],
            "stopped": report.stopped,
            "summary": None if summary is None else str(summary),
        }
        say(json.dumps(payload, indent=2))
    else:
        for skip in report.scan_skips:
            say(f"skipped {shown(skip.path)}: {shown(skip.reason)}", err=True)
        if skipped:
            say(f"skipped {len(skipped)} of {report.jobs} files already done (--overwrite to redo)")
        if summary is not None:
            say(f"summary: {shown(summary)}")
    if report.stopped is not None:
        try:
            report_failures(failures, report.jobs)  # the other files' reasons first
        except SystemExit:
            pass
        left = report.todo - len(report.results) - len(failures)
        say(
            shown(
                f"error: {report.stopped}; stopped with {left} of {report.todo} files not done "
                "(free space or fix the folder, then run the same command again to resume)"
            ),
            err=True,
        )
        raise SystemExit(1)
    report_failures(failures, report.jobs)


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
