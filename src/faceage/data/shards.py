"""Face shards: plain tar files of aligned JPEG faces plus JSON labels, and their reader.

Format (``faceage-shards-v1``), readable with the Python stdlib + Pillow/numpy only:

- ``faces-{split}-{index:04d}.tar``: POSIX ustar archives, at most ``max_bytes`` each. Members
  come in pairs, ``KEY.jpg`` (the aligned RGB face, JPEG quality 95, 4:4:4) then ``KEY.json``
  (UTF-8 labels: key, age, gender 0 male/1 female, ethnicity, ethnicity_assumed, decade, source,
  file, person_id, split, score = detector confidence, coverage = share of the face square that
  shows real photo pixels rather than mirror/blur padding). KEY matches ``[A-Za-z0-9_-]+``, so webdataset-style readers
  work too. Samples within a shard are in pseudo-random order (the split rank), not by age.
- ``manifest.json``: ``"format"``, ``"shards"`` (name, split, index, count, bytes, sha256) and
  the counts, rejects and settings of the run; written last, so its presence marks a finished
  folder. ``labels.csv``: one row per sample with its shard.

A minimal reader without faceage::

    with tarfile.open(path) as tar:
        for m in tar:  # KEY.jpg then KEY.json
            data = tar.extractfile(m).read()
            if m.name.endswith(".jpg"): rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            else: labels = json.loads(data)

Shards are written atomically (``NAME.tmp`` then rename) and deterministically (fixed member
metadata), so the same faces in the same order give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.atomic import write_json_atomic  # noqa: F401 - re-exported: callers import it from here
from faceage.checksum import sha256_file
from faceage.errors import DatasetError

FORMAT = "faceage-shards-v1"
MANIFEST = "manifest.json"
LABELS_CSV = "labels.csv"
DEFAULT_MAX_BYTES = 48 * 2**20
JPEG_QUALITY = 95
# 4:4:4 (no chroma subsampling): 128-px faces have little colour resolution to spare, and a
# generator trained on 4:2:0 data learns its blur; costs ~25% more bytes.
JPEG_SUBSAMPLING = 0
SHARD_NAME = re.compile(r"faces-(?P<split>[a-z]+)-(?P<index>\d{4})\.tar")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,90}")
_BLOCK = tarfile.BLOCKSIZE  # 512: every member is a header block plus data padded to blocks
_RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads the finished archive to a multiple of this


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard."""

    name: str
    split: str
    index: int
    count: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def shard_name(split: str, index: int) -> str:
    return f"faces-{split}-{index:04d}.tar"


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (4:4:4, no metadata)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, "JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


LANDMARKS_KEY = "landmarks"  # labels field: base64 of (478, 2) little-endian float16, aligned pixels


def encode_landmarks(points: np.ndarray) -> str:
    """(N, 2) aligned landmark coordinates -> compact text for a JSON label (float16, base64).

    float16 keeps 1/8 px or better below 512 px, enough for shape statistics, at 1.9 kB a face."""
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"landmarks must be a finite (N, 2) array, got {points.shape}")
    return encode_array(points)


def decode_landmarks(labels: dict) -> np.ndarray | None:
    """The (N, 2) float32 landmarks stored in a sample's labels, or None when it has none."""
    import base64

    text = labels.get(LANDMARKS_KEY)
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), "<f2").astype(np.float32).reshape(-1, 2)


def encode_array(values: np.ndarray) -> str:
    """A small finite array -> text for a JSON label (little-endian float16, base64); the shape
    is the caller's to store or know (``decode_array``)."""
    import base64

    values = np.asarray(values, np.float32)
    if not np.isfinite(values).all():
        raise ValueError("only finite arrays can be stored in labels")
    return base64.b64encode(values.astype("<f2").tobytes()).decode("ascii")


def decode_array(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_array`: float32 of ``shape`` (one side may be -1, as in reshape)."""
    import base64

    values = np.frombuffer(base64.b64decode(text), "<f2")
    try:
        return values.astype(np.float32).reshape(shape)
    except ValueError:
        raise DatasetError(f"stored array has {values.size} values, not shape {shape}") from None


def _member_bytes(n: int) -> int:
    return _BLOCK + -(-n // _BLOCK) * _BLOCK


def _closed_size(offset: int) -> int:
    # Closing writes two zero blocks, then pads to a whole record.
    return -(-(offset + 2 * _BLOCK) // _RECORD) * _RECORD


class _OpenShard:
    def __init__(self, final: Path, split: str, index: int):
        self.final, self.split, self.index = final, split, index
        self.tmp = final.with_name(final.name + ".tmp")
        self.file = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
        self.offset = 0
        self.count = 0

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self.tar.addfile(info, io.BytesIO(data))
        self.offset += _member_bytes(len(data))

    def finish(self) -> ShardInfo:
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.final)
        size = self.final.stat().st_size
        return ShardInfo(self.final.name, self.split, self.index, self.count, size, sha256_file(self.final))

    def abort(self) -> None:
        try:
            self.tar.close()
        except Exception:  # noqa: BLE001 - best effort while cleaning up
            pass
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class ShardWriter:
    """Write samples into ``faces-{split}-{index:04d}.tar`` shards of at most ``max_bytes``.

    One shard per split is open at a time; it is renamed from ``.tmp`` to its final name only
    when full or on ``close()``. Use as a context manager: an exception aborts (deletes) the open
    ``.tmp`` shards and keeps the finished ones. ``start_index`` continues numbering (resume).
    """

    def __init__(
        self,
        out_dir: str | Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_index: dict[str, int] | None = None,
    ):
        if max_bytes < 4 * _RECORD:
            raise ValueError(f"max_bytes must be at least {4 * _RECORD}, got {max_bytes}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._next = dict(start_index or {})
        self._open: dict[str, _OpenShard] = {}

    def write(self, key: str, split: str, jpeg: bytes, labels: dict) -> str:
        """Add one sample (already-encoded JPEG); return the name of the shard it went to."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"sample key must match [A-Za-z0-9_-]{{1,90}}: {key!r}")
        if not re.fullmatch(r"[a-z]+", split):
            raise ValueError(f"split must be lowercase letters: {split!r}")
        meta = json.dumps({**labels, "key": key, "split": split}, sort_keys=True).encode()
        need = _member_bytes(len(jpeg)) + _member_bytes(len(meta))
        if _closed_size(need) > self.max_bytes:
            raise ValueError(f"sample {key} ({need} bytes) does not fit in a {self.max_bytes}-byte shard")
        shard = self._open.get(split)
        if shard is not None and _closed_size(shard.offset + need) > self.max_bytes:
            self.shards.append(shard.finish())
            shard = None
        if shard is None:
            index = self._next.get(split, 0)
            self._next[split] = index + 1
            shard = self._open[split] = _OpenShard(self.out_dir / shard_name(split, index), split, index)
        shard.add(f"{key}.jpg", jpeg)
        shard.add(f"{key}.json", meta)
        shard.count += 1
        return shard.final.name

    def write_image(self, key: str, split: str, rgb: np.ndarray, labels: dict) -> str:
        """Encode an (N, N, 3) uint8 RGB face as JPEG and add it."""
        return self.write(key, split, encode_jpeg(rgb), labels)

    def close(self) -> list[ShardInfo]:
        """Finish all open shards; return every shard this writer finished, in order."""
        for split in list(self._open):
            self.shards.append(self._open.pop(split).finish())
        return self.shards

    def abort(self) -> None:
        """Delete the unfinished ``.tmp`` shards (finished shards stay)."""
        for split in list(self._open):
            self._open.pop(split).abort()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_shard(path: str | Path, decode: bool = True) -> Iterator[tuple[str, np.ndarray | bytes, dict]]:
    """Yield (key, image, labels) from one shard; image is (N, N, 3) uint8 RGB, or the raw JPEG
    bytes with ``decode=False``."""
    path = Path(path)
    pending: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                parts = pending.setdefault(key, {})
                parts[ext] = fileobj.read()
                if "jpg" in parts and "json" in parts:
                    del pending[key]
                    image = decode_jpeg(parts["jpg"]) if decode else parts["jpg"]
                    yield key, image, json.loads(parts["json"])
    except (tarfile.TarError, OSError) as e:
        raise DatasetError(f"cannot read shard {path}: {e}") from e
    if pending:
        raise DatasetError(f"shard {path} has incomplete samples: {', '.join(sorted(pending)[:3])}")


_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")


def index_shard(path: Path) -> tuple[list[tuple[int, int]], list[dict]]:
    """(offset, size) of every image member, in order, and the labels of the matching JSON (or {}):
    random access to a shard's faces (the trainers' datasets seek to them)."""
    entries: dict[str, tuple[int, int]] = {}
    labels: dict[str, dict] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, dot, ext = m.name.rpartition(".")
                ext = "." + ext.lower()
                if ext in _IMAGE_EXTS:
                    entries[key] = (m.offset_data, m.size)
                    order.append(key)
                elif ext == ".json":
                    f = tar.extractfile(m)
                    labels[key] = json.loads(f.read()) if f is not None else {}
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DatasetError(f"cannot index shard {path}: {exc}") from exc
    return [entries[k] for k in order], [labels.get(k, {}) for k in order]


def find_shards(folder: str | Path, split: str | None) -> list[Path]:
    """Shard paths of ``split`` from the folder's manifest; without a manifest, every ``*.tar``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"data folder not found: {folder}")
    if (folder / MANIFEST).is_file():
        paths = [folder / s.name for s in read_index(folder, split)]
    else:
        paths = sorted(folder.glob("*.tar"))
        if split is not None:
            tagged = [p for p in paths if f"-{split}-" in p.name]
            paths = tagged or paths
    if not paths:
        raise DatasetError(f"no shards{f' of split {split!r}' if split else ''} in {folder}")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"shard listed in the manifest is missing: {missing[0]}")
    return paths


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"no {MANIFEST} in {folder}: not a prepared folder, or preparation did not finish") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def read_index(folder: str | Path, split: str | None = None) -> list[ShardInfo]:
    """The shards listed in ``folder/manifest.json`` (optionally of one split), in order."""
    shards = [ShardInfo(**s) for s in read_manifest(folder)["shards"]]
    return [s for s in shards if split is None or s.split == split]


class ShardReader:
    """Iterate the samples of a prepared folder, shard by shard, in manifest order.

    ``verify=True`` checks each shard's size and sha256 against the manifest before reading it.
    """

    def __init__(self, folder: str | Path, split: str | None = None, verify: bool = False, decode: bool = True):
        self.folder = Path(folder)
        self.shards = read_index(self.folder, split)
        self.verify, self.decode = verify, decode

    def __len__(self) -> int:
        return sum(s.count for s in self.shards)

    def paths(self) -> list[Path]:
        return [self.folder / s.name for s in self.shards]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray | bytes, dict]]:
        for info in self.shards:
            path = self.folder / info.name
            if self.verify:
                if not path.is_file() or path.stat().st_size != info.bytes or sha256_file(path) != info.sha256:
                    raise DatasetError(f"shard {path} is missing or does not match its manifest entry")
            yield from iter_shard(path, decode=self.decode)
