"""Age prototypes: the averaged faces of every age bin, and how to read them at any age.

Built by ``faceage train prototypes`` (``faceage.training.prototype_builder``), used by the ``prototype``
aging method. Following Burt & Perrett ("Perception of age in adult Caucasian male faces", 1995)
and Rowland & Perrett ("Manipulating facial appearance through shape and color", 1995), each
*cell* (age bin x gender, and x ethnicity where enough faces exist) holds:

- ``shapes``   (C, 478, 2): the mean landmark positions of its faces (aligned 256 px frame);
- ``colour``   (C, g, g, 3): the mean shape-normalised face in YCrCb (warped to the global mean
  shape), padding, hair and background excluded;
- ``light``    (C, R, l, l, 3): a low-rank basis of the cell's shape-normalised faces around that
  mean (illumination-aware age progression, Kemelmacher-Shlizerman, Suwajanakorn & Seitz, CVPR
  2014): projecting a face on it gives the cell's average *lit like that face*;
- ``energy``   (C, K, e, e): the mean local energy of each detail band (Tiddeman, Burt & Perrett,
  IEEE CG&A 2001), where wrinkles and skin texture are.

and per age bin x gender (format version 2):

- ``detail``   (G, B, d, d): the signed fine luminance (below ``DETAIL_SIGMA`` px) of the bin's
  average face after its faces were aligned to each other by dense optical flow (collection
  flow, Kemelmacher-Shlizerman et al., CVPR 2014): sharp folds, bags and lines, in the mean frame.
  Stored as int8 steps of ``DETAIL_STEP`` grey levels.

``cell_index[gender, ethnicity, bin]`` names the cell to use; an ethnicity with too few faces in a
bin points at the pooled cell (ethnicity index ``len(ETHNICITIES)``). Ages between bin centres are
read by linear interpolation.

Stored as one safetensors file (fp16 arrays) plus a JSON file beside it with the settings, counts
and calibration. Convention: positions in aligned pixels of a ``size`` face, colours 0..255.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceage.errors import ModelFileError

FORMAT = "faceage-prototypes"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 files have no signed detail
DETAIL_STEP = 0.25  # grey levels per int8 step of the stored detail (range +-32)
# Age bins of the lifespan face-aging work (FFHQ-Aging) with the 50s, 60s and 70s apart.
BINS: tuple[tuple[int, int], ...] = (
    (0, 2),
    (3, 6),
    (7, 9),
    (10, 14),
    (15, 19),
    (20, 29),
    (30, 39),
    (40, 49),
    (50, 59),
    (60, 69),
    (70, 79),
    (80, 120),
)
GENDERS = ("male", "female")
ETHNICITIES = ("white", "black", "asian", "indian", "other")
POOLED = len(ETHNICITIES)  # ethnicity index of the cells pooled over ethnicities

_ARRAYS = (
    "shapes",
    "colour",
    "light",
    "energy",
    "mean_shape",
    "triangles",
    "region",
    "cell_index",
    "centres",
    "clf_mean",
    "clf_components",
    "clf_weights",
    "clf_bias",
    "calib_targets",
    "calib_gains",
)


def procrustes_to(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, P, 2) point sets similarity-aligned to ``reference`` (P, 2), vectorised."""
    ref_c = reference.mean(axis=0)
    r = reference - ref_c
    c = points.mean(axis=1, keepdims=True)
    x = points - c
    # optimal rotation+scale as a complex number: sum(conj(x) * r) / sum(|x|^2)
    xc = x[..., 0] + 1j * x[..., 1]
    rc = r[:, 0] + 1j * r[:, 1]
    a = (np.conj(xc) * rc[None]).sum(axis=1) / np.maximum((np.abs(xc) ** 2).sum(axis=1), 1e-9)
    y = xc * a[:, None]
    return np.stack([y.real, y.imag], axis=-1) + ref_c


def bin_of(age: float) -> int:
    """Index of the bin holding ``age`` (clamped to the first and last bin)."""
    for i, (lo, hi) in enumerate(BINS):
        if age < hi + 1:
            return i if age >= lo else max(i - 1, 0)
    return len(BINS) - 1


@dataclass(eq=False)
class PrototypeSet:
    """All prototypes plus what the method needs around them (see the module docstring).

    mean_shape   (478, 2) global mean landmarks: the shape-normalised frame.
    triangles    (T, 3) triangulation of the mean frame's control points (``faces.mesh``).
    region       (g, g) float in [0, 1]: where colour and energy statistics are valid.
    centres      (B,) mean age of the faces in each bin.
    clf_*        linear gender/ethnicity classifier on shape-normalised features (PCA, then
                 softmax heads: the first 2 outputs gender, the next 5 ethnicity).
    calib_*      per target age, the strength gain that makes faceage's own age regressor read
                 the target (fitted on the validation split when built).
    fit_limit    Procrustes residual (px) above which a landmark fit counts as poor.
    info         build settings, counts per cell, time; written to the JSON file.
    """

    size: int
    shapes: np.ndarray
    colour: np.ndarray
    light: np.ndarray
    energy: np.ndarray
    mean_shape: np.ndarray
    triangles: np.ndarray
    region: np.ndarray
    cell_index: np.ndarray
    centres: np.ndarray
    clf_mean: np.ndarray
    clf_components: np.ndarray
    clf_weights: np.ndarray
    clf_bias: np.ndarray
    calib_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    calib_gains: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    detail: np.ndarray = field(default_factory=lambda: np.zeros((len(GENDERS), len(BINS), 0, 0), np.float32))
    fit_limit: float = 6.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        cells = self.shapes.shape[0]
        if self.cell_index.shape != (len(GENDERS), len(ETHNICITIES) + 1, len(BINS)):
            raise ValueError(f"cell_index has shape {self.cell_index.shape}")
        if self.cell_index.min() < 0 or self.cell_index.max() >= cells:
            raise ValueError("cell_index points outside the cells")
        for name in ("colour", "light", "energy"):
            if getattr(self, name).shape[0] != cells:
                raise ValueError(f"{name} holds {getattr(self, name).shape[0]} cells, shapes {cells}")
        if self.detail.ndim != 4 or self.detail.shape[:2] != (len(GENDERS), len(BINS)):
            raise ValueError(f"detail has shape {self.detail.shape}, expected (genders, bins, d, d)")

    # --- reading at an age -------------------------------------------------------------------

    def age_weights(self, age: float) -> list[tuple[int, float]]:
        """[(bin, weight)] that read ``age`` by linear interpolation between bin centres."""
        c = self.centres
        if age <= c[0]:
            return [(0, 1.0)]
        if age >= c[-1]:
            return [(len(c) - 1, 1.0)]
        hi = int(np.searchsorted(c, age, side="right"))
        lo = hi - 1
        t = float((age - c[lo]) / (c[hi] - c[lo]))
        return [(lo, 1.0 - t), (hi, t)] if t > 0 else [(lo, 1.0)]

    def cell_weights(self, age: float, mix: list[tuple[int, int, float]]) -> dict[int, float]:
        """{cell: weight} at ``age`` for a face whose (gender, ethnicity, weight) mix is ``mix``."""
        out: dict[int, float] = {}
        for b, wb in self.age_weights(age):
            for g, e, wm in mix:
                cell = int(self.cell_index[g, e, b])
                out[cell] = out.get(cell, 0.0) + wb * wm
        return out

    def shape_at(self, age: float, mix: list[tuple[int, int, float]]) -> np.ndarray:
        """(478, 2) prototype landmarks at ``age``."""
        return sum(w * self.shapes[c] for c, w in self.cell_weights(age, mix).items())

    def colour_at(self, age: float, mix: list[tuple[int, int, float]]) -> np.ndarray:
        return sum(w * self.colour[c] for c, w in self.cell_weights(age, mix).items())

    def energy_at(self, age: float, mix: list[tuple[int, int, float]]) -> np.ndarray:
        return sum(w * self.energy[c] for c, w in self.cell_weights(age, mix).items())

    @property
    def has_detail(self) -> bool:
        return self.detail.shape[-1] > 0

    def detail_at(self, age: float, mix: list[tuple[int, int, float]]) -> np.ndarray:
        """(d, d) signed sharp detail at ``age`` (genders as in ``mix``; ethnicity pooled)."""
        out = np.zeros(self.detail.shape[2:], np.float32)
        for b, wb in self.age_weights(age):
            for g, _, wm in mix:
                out += (wb * wm) * self.detail[g, b]
        return out

    def classify(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, F) classifier features -> gender probabilities (N, 2), ethnicity probabilities (N, 5)."""
        z = (np.asarray(features, np.float32) - self.clf_mean) @ self.clf_components.T
        logits = z @ self.clf_weights + self.clf_bias

        def softmax(a: np.ndarray) -> np.ndarray:
            ea = np.exp(a - a.max(axis=1, keepdims=True))
            return ea / ea.sum(axis=1, keepdims=True)

        return softmax(logits[:, : len(GENDERS)]), softmax(logits[:, len(GENDERS) :])

    def gain(self, target: float) -> float:
        """Calibrated strength gain for ``target`` (1 without calibration)."""
        if len(self.calib_targets) == 0:
            return 1.0
        return float(np.interp(target, self.calib_targets, self.calib_gains))

    # --- storage -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors, fp16 for images, exact for indices) and its .json."""
        from safetensors.numpy import save

        from faceage.atomic import write_bytes_atomic, write_json_atomic

        path = Path(path)
        tensors = {}
        if self.has_detail:
            steps = np.clip(np.round(self.detail / DETAIL_STEP), -127, 127)
            tensors["detail"] = np.ascontiguousarray(steps.astype(np.int8))
        for name in _ARRAYS:
            a = np.ascontiguousarray(getattr(self, name))
            if name in ("triangles", "cell_index"):
                a = a.astype(np.int16)
            elif name not in ("centres", "calib_targets", "calib_gains"):
                a = a.astype(np.float16)
            else:
                a = a.astype(np.float32)
            tensors[name] = a
        write_bytes_atomic(path, save(tensors))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "size": self.size,
            "fit_limit": self.fit_limit,
            "detail_step": DETAIL_STEP,
            "bins": [list(b) for b in BINS],
            "genders": list(GENDERS),
            "ethnicities": list(ETHNICITIES),
            **self.info,
        }
        write_json_atomic(path.with_suffix(".json"), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PrototypeSet:
        """Read a prototype file and its JSON; ``ModelFileError`` if missing or malformed."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise ModelFileError(f"prototype files are missing: {path} and {meta_path.name} are both needed")
        try:
            arrays = load_file(str(path))
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelFileError(f"prototype file {path} is unreadable: {e}") from None
        if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
            raise ModelFileError(f"{meta_path} is not a {FORMAT} file of version {READABLE_VERSIONS}")
        missing = [n for n in _ARRAYS if n not in arrays]
        if missing:
            raise ModelFileError(f"prototype file {path} lacks {', '.join(missing)}")
        kwargs = {n: arrays[n].astype(np.int64 if n in ("triangles", "cell_index") else np.float32) for n in _ARRAYS}
        if "detail" in arrays:
            kwargs["detail"] = arrays["detail"].astype(np.float32) * float(meta.get("detail_step", DETAIL_STEP))
        info = {
            k: v
            for k, v in meta.items()
            if k not in ("format", "version", "size", "fit_limit", "detail_step", "bins", "genders", "ethnicities")
        }
        try:
            return cls(size=int(meta["size"]), fit_limit=float(meta["fit_limit"]), info=info, **kwargs)
        except (KeyError, ValueError) as e:
            raise ModelFileError(f"prototype file {path} is inconsistent: {e}") from None
