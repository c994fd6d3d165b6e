"""Scan the two face datasets into labelled records, without decoding any image.

Label conventions (the same for every source, and in every shard and CSV we write):

- ``gender``: 0 male, 1 female. UTKFace file names already use this. AAF's ``labels.csv`` says
  ``male``/``female`` and its ``splits/*.txt`` files say 1 male / 0 female; we take
  ``labels.csv`` and reject a file where a splits file disagrees (none do in the shipped copy).
- ``ethnicity``: one of ``ETHNICITIES``. UTKFace race 0-4 maps to white, black, asian, indian,
  other. AAF has no per-photo ethnicity: its faces are mostly East Asian, so every AAF record is
  ``asian`` with ``ethnicity_assumed=True``; treat per-ethnicity numbers on AAF as approximate.
- ``person_id``: AAF's 5-digit id (one photo per id, but see ``find_duplicates``: the same photo
  can appear under two ids); UTKFace has no ids, so ``None``.
- ``key``: a stable, unique sample name made of ``[A-Za-z0-9_-]`` (no dots, so tar/webdataset
  tools can split ``KEY.jpg``/``KEY.json``), e.g. ``utk-25_1_2_20170116174525125``, ``aaf-00000A02``.

Malformed inputs are never fatal: each comes back as a ``Reject`` with a reason from ``REASONS``.
A missing or wrong folder raises ``DatasetError`` with a one-line message.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from faceage.errors import DatasetError

SOURCES = ("utkface", "aaf")
ETHNICITIES = ("white", "black", "asian", "indian", "other")
UTK_RACES = ETHNICITIES  # UTKFace race code i -> ETHNICITIES[i]
GENDERS = ("male", "female")  # gender code i -> GENDERS[i]

# Ages we accept. UTKFace spans 1-116 and AAF 2-80; anything outside 0-120 is a broken label.
AGE_MIN, AGE_MAX = 0, 120

# Decade bins used for stratification and reports: 0-9, 10-19, ..., 80-89, 90+.
DECADES = tuple(f"{d}-{d + 9}" for d in range(0, 90, 10)) + ("90+",)

# Reject reasons (a fixed vocabulary, so reports can count them).
MALFORMED_NAME = "malformed name"
MALFORMED_LABEL = "malformed label"
AGE_OUT_OF_RANGE = "age out of range"
MISSING_LABEL_ROW = "missing label row"
MISSING_IMAGE = "missing image file"
LABEL_CONFLICT = "conflicting labels"
DUPLICATE_IMAGE = "duplicate image"
DUPLICATE_CONFLICT = "duplicate image with conflicting labels"
UNREADABLE = "unreadable"
NO_FACE = "no face"
PIPELINE_ERROR = "pipeline error"
REASONS = (
    MALFORMED_NAME,
    MALFORMED_LABEL,
    AGE_OUT_OF_RANGE,
    MISSING_LABEL_ROW,
    MISSING_IMAGE,
    LABEL_CONFLICT,
    DUPLICATE_IMAGE,
    DUPLICATE_CONFLICT,
    UNREADABLE,
    NO_FACE,
    PIPELINE_ERROR,
)

# UTKFace: AGE_GENDER_RACE_DATETIME.jpg.chip.jpg. Only the three labels must be well formed; the
# datetime part is not a label and a few files have a 16/18-digit stamp, a space or a lost dot
# there, which we accept. Files missing a field (e.g. "61_1_20170109150557335...") are rejected.
_UTK_NAME = re.compile(r"(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<rest>[^_]+)")
# AAF: PPPPPAGG.jpg, person id PPPPP and age GG.
_AAF_NAME = re.compile(r"(?P<pid>\d{5})A(?P<age>\d{2})\.jpg", re.IGNORECASE)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Record:
    """One labelled face photo.

    Convention: ``gender`` 0 male / 1 female; ``ethnicity`` in ``ETHNICITIES``; ``age`` in years.
    ``file`` is the original file name, ``path`` the full path.
    """

    source: str
    path: Path
    file: str
    key: str
    age: int
    gender: int
    ethnicity: str
    ethnicity_assumed: bool = False
    person_id: str | None = None

    @property
    def decade(self) -> str:
        return decade_of(self.age)

    def labels(self) -> dict:
        """The labels as a JSON-ready dict (what goes into a shard's ``KEY.json``)."""
        return {
            "key": self.key,
            "age": self.age,
            "gender": self.gender,
            "ethnicity": self.ethnicity,
            "ethnicity_assumed": self.ethnicity_assumed,
            "decade": self.decade,
            "source": self.source,
            "file": self.file,
            "person_id": self.person_id,
        }


@dataclass(frozen=True)
class Reject:
    """A file we skip, with one reason from ``REASONS`` and an optional detail."""

    path: str
    reason: str
    detail: str = ""
    source: str = ""


def decade_of(age: int) -> str:
    """Decade bin of an age: ``"0-9"`` ... ``"80-89"``, ``"90+"``."""
    return DECADES[min(max(age, 0) // 10, len(DECADES) - 1)]


def _key(prefix: str, file: str) -> str:
    stem = file.split(".", 1)[0]
    return f"{prefix}-{_KEY_UNSAFE.sub('-', stem)}"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def _age_ok(age: int) -> bool:
    return AGE_MIN <= age <= AGE_MAX


def scan_utkface(folder: str | Path) -> tuple[list[Record], list[Reject]]:
    """Scan UTKFace's ``images`` folder (or its parent) from the file names alone.

    Returns (records, rejects), both sorted by file name. Raises ``DatasetError`` if the folder
    is missing or holds no UTKFace-style files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"UTKFace folder not found: {folder}")
    if (folder / "images").is_dir() and not any(folder.glob("*.chip.jpg")):
        folder = folder / "images"
    files = _image_files(folder)
    if not any(p.name.lower().endswith(".jpg") for p in files):
        raise DatasetError(f"no UTKFace images in {folder} (expected AGE_GENDER_RACE_DATETIME.jpg.chip.jpg files)")
    records: list[Record] = []
    rejects: list[Reject] = []
    for path in files:
        m = _UTK_NAME.match(path.name)
        if m is None or not path.name.lower().endswith(".jpg"):
            rejects.append(
                Reject(str(path), MALFORMED_NAME, "expected AGE_GENDER_RACE_DATETIME.jpg.chip.jpg", "utkface")
            )
            continue
        age = int(m["age"])
        if not _age_ok(age):
            rejects.append(Reject(str(path), AGE_OUT_OF_RANGE, f"age {age}", "utkface"))
            continue
        records.append(
            Record(
                source="utkface",
                path=path,
                file=path.name,
                key=_key("utk", path.name),
                age=age,
                gender=int(m["gender"]),
                ethnicity=UTK_RACES[int(m["race"])],
            )
        )
    return records, rejects


def _read_aaf_split_genders(splits: Path) -> dict[str, set[int]]:
    """File -> genders (our convention) stated in AAF's splits/*.txt, where 1 = male, 0 = female."""
    genders: dict[str, set[int]] = defaultdict(set)
    if not splits.is_dir():
        return genders
    for txt in sorted(splits.glob("*.txt")):
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] in ("0", "1"):
                genders[parts[0]].add(0 if parts[1] == "1" else 1)
    return genders


def scan_aaf(folder: str | Path) -> tuple[list[Record], list[Reject]]:
    """Scan All-Age-Faces: ``images/`` plus ``labels.csv`` (and ``splits/`` as a cross-check).

    Age comes from ``labels.csv`` and must match the age in the file name; gender from
    ``labels.csv`` (male/female), checked against ``splits/*.txt`` where listed.
    Returns (records, rejects), sorted by file name. Raises ``DatasetError`` for a wrong folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"AAF folder not found: {folder}")
    images, labels_csv = folder / "images", folder / "labels.csv"
    if not images.is_dir() or not labels_csv.is_file():
        raise DatasetError(f"not an AAF folder (expected images/ and labels.csv): {folder}")

    rows: dict[str, dict[str, str]] = {}
    with labels_csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "age", "gender"} <= set(reader.fieldnames):
            raise DatasetError(f"AAF labels.csv lacks the columns file, age, gender: {labels_csv}")
        for entry in reader:
            rows.setdefault((entry.get("file") or "").strip(), entry)
    split_genders = _read_aaf_split_genders(folder / "splits")

    records: list[Record] = []
    rejects: list[Reject] = []
    present = set()
    for path in _image_files(images):
        present.add(path.name)
        m = _AAF_NAME.fullmatch(path.name)
        if m is None:
            rejects.append(Reject(str(path), MALFORMED_NAME, "expected PPPPPAGG.jpg", "aaf"))
            continue
        row = rows.get(path.name)
        if row is None:
            rejects.append(Reject(str(path), MISSING_LABEL_ROW, "not in labels.csv", "aaf"))
            continue
        age_text, gender_text = (row.get("age") or "").strip(), (row.get("gender") or "").strip().lower()
        if not age_text.isdigit() or gender_text not in GENDERS:
            rejects.append(Reject(str(path), MALFORMED_LABEL, f"age={age_text!r} gender={gender_text!r}", "aaf"))
            continue
        age, gender = int(age_text), GENDERS.index(gender_text)
        if age != int(m["age"]):
            rejects.append(
                Reject(str(path), LABEL_CONFLICT, f"labels.csv age {age}, file name age {int(m['age'])}", "aaf")
            )
            continue
        if split_genders.get(path.name, {gender}) != {gender}:
            rejects.append(Reject(str(path), LABEL_CONFLICT, "labels.csv and splits/ disagree on gender", "aaf"))
            continue
        if not _age_ok(age):
            rejects.append(Reject(str(path), AGE_OUT_OF_RANGE, f"age {age}", "aaf"))
            continue
        records.append(
            Record(
                source="aaf",
                path=path,
                file=path.name,
                key=_key("aaf", path.name),
                age=age,
                gender=gender,
                ethnicity="asian",
                ethnicity_assumed=True,
                person_id=m["pid"],
            )
        )
    for name in sorted(set(rows) - present):
        rejects.append(Reject(str(images / name), MISSING_IMAGE, "listed in labels.csv", "aaf"))
    return records, rejects


def _label_tuple(r: Record) -> tuple:
    return (r.age, r.gender, r.ethnicity)


def find_duplicates(records: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
    """Drop byte-identical photos (reads each file once; no decoding).

    Both datasets contain the same photo under several names (UTKFace ~375 groups, AAF ~186,
    often with different ages). Left in, a copy could land in train and another in test. Per group
    of identical files: if all labels agree, keep the first by (source, file) and reject the rest
    as ``DUPLICATE_IMAGE``; if labels disagree, nobody knows which is right, so reject all as
    ``DUPLICATE_CONFLICT``. Near-duplicates (re-encoded or re-cropped) are not detected.
    Unreadable files are kept here; alignment rejects them later.
    """
    groups: dict[str, list[Record]] = defaultdict(list)
    kept: list[Record] = []
    for r in records:
        try:
            digest = hashlib.sha256(r.path.read_bytes()).hexdigest()
        except OSError:
            kept.append(r)
            continue
        groups[digest].append(r)
    rejects: list[Reject] = []
    for group in groups.values():
        group = sorted(group, key=lambda r: (r.source, r.file))
        if len(group) == 1:
            kept.append(group[0])
            continue
        names = ", ".join(r.file for r in group)
        if len({_label_tuple(r) for r in group}) == 1:
            kept.append(group[0])
            rejects.extend(
                Reject(str(r.path), DUPLICATE_IMAGE, f"same bytes as {group[0].file}", r.source) for r in group[1:]
            )
        else:
            rejects.extend(
                Reject(str(r.path), DUPLICATE_CONFLICT, f"identical files: {names}", r.source) for r in group
            )
    kept.sort(key=lambda r: (r.source, r.file))
    return kept, rejects


def check_unique_keys(records: Iterable[Record]) -> None:
    """Raise ``DatasetError`` if two records map to the same key (would overwrite in a shard)."""
    seen: dict[str, str] = {}
    for r in records:
        if r.key in seen:
            raise DatasetError(f"two files map to the sample key {r.key}: {seen[r.key]} and {r.path}")
        seen[r.key] = str(r.path)
