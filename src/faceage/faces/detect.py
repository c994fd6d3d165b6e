"""Face boxes and five points with YuNet (fp32 ONNX through ``cv2.FaceDetectorYN``).

YuNet finds faces from about 10 px up to roughly 300 px wide in the image it is given; faces much
larger than that (a selfie, a tight dataset crop) are missed. ``FaceDetector`` therefore looks at
two scales and merges them:

* a *coarse* view: the whole photo with a 25 % border added on every side (so a face that fills
  the frame, like a 200x200 UTKFace crop, is not touching the image edge), resized so its longer
  side is ``coarse_side`` (up for tiny crops, down for photos) — this catches the large faces;
* a *fine* view: the photo itself, downscaled to at most ``max_side`` on its longer side — this
  catches small faces in group photos; it is skipped when it would not be sharper than the coarse
  view (small images).

Detections from both views are mapped back to photo pixels and merged with non-maximum
suppression. Output is deterministic (same input, same faces in the same order).

Extreme shapes: a photo more than ``MAX_ASPECT`` times longer than wide (a 6000x200 banner) is cut
into overlapping tiles twice as long as its short side (every face up to the short side lies whole
in one tile), each detected as above. And no view smaller than ``MIN_VIEW`` px on a side ever
reaches YuNet: OpenCV's detector returns rows of uninitialised memory for inputs at most 32 px high
(score 1.0, coordinates that change from call to call), which once gave 3, 0, 3 and 4 phantom
faces for the same banner; small views are padded, and rows that are not finite are dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from faceage.assets import model_path
from faceage.faces.align import resize_image as _resize
from faceage.imageio import check_rgb


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class DetectedFace:
    """One detected face.

    Convention:
        box     float32 (4,) x0, y0, x1, y1 in photo pixels; may extend past the image border
                when the face is cut by it.
        points  float32 (5, 2) (x, y) photo pixels, ordered left eye, right eye, nose tip,
                mouth left, mouth right, left/right as seen in the image.
        score   detector confidence in [0, 1].
    """

    box: np.ndarray
    points: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height


# YuNet's output row: x, y, w, h, then five (x, y) points, then the score. Its points are named
# from the subject's view: right eye, left eye, nose tip, right mouth corner, left mouth corner.
# The subject's right is the image's left, so YuNet's order is already ours (left = smaller x on an
# upright face); we keep its semantic order rather than sorting by x, so that a rolled face keeps
# consistent points and aligns upright. (YuNet's points degrade beyond ~30 degrees of roll.)
_YUNET_TO_OURS = np.array([0, 1, 2, 3, 4])
MAX_ASPECT = 3.0
MIN_VIEW = 64


class FaceDetector:
    """YuNet face detector that works on photos of any size.

    Args:
        score_threshold: minimum YuNet confidence of a face (0.7: rejects most false positives on
            textures while keeping profile and blurred faces seen on UTKFace/AAF).
        nms: IoU above which two detections are the same face (within and across scales).
        max_side: longer side of the fine view; photos above it are downscaled for detection.
            Cost grows with its square (on 2 idle cores ≈ 17 ms at 640, 60 ms at 1024); faces
            narrower than about ``12 * photo_side / max_side`` pixels are missed (75 px on a
            4000 px photo at 640: raise it for crowd photos).
        coarse_side: longer side of the coarse (padded) view.

    Calls from several threads are serialised (the OpenCV detector holds its input size); use one
    detector per thread or process for parallel work.
    """

    def __init__(
        self,
        score_threshold: float = 0.7,
        nms: float = 0.3,
        max_side: int = 640,
        coarse_side: int = 320,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms <= 1.0:
            raise ValueError(f"nms must be in (0, 1], got {nms}")
        if max_side < 64 or coarse_side < 64:
            raise ValueError(f"max_side and coarse_side must be >= 64, got {max_side}, {coarse_side}")
        self.score_threshold = float(score_threshold)
        self.nms = float(nms)
        self.max_side = int(max_side)
        self.coarse_side = int(coarse_side)
        # YuNet applies ``nms`` within each view, ``_nms`` again across the two views.
        self._net = cv2.FaceDetectorYN.create(
            str(model_path("yunet")), "", (320, 320), self.score_threshold, self.nms, 5000
        )
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in an RGB uint8 photo, largest first (ties: higher score, then left to right)."""
        rgb = check_rgb(rgb)
        h, w = rgb.shape[:2]
        short, long_side = min(h, w), max(h, w)
        if long_side > MAX_ASPECT * short:
            # overlapping tiles along the long side; each face narrower than ``short`` is whole in one
            tile, step = 2 * short, short
            starts = list(range(0, long_side - tile, step)) + [long_side - tile]
            rows = []
            for start in starts:
                part = rgb[:, start : start + tile] if w > h else rgb[start : start + tile]
                found = self._detect_rows(np.ascontiguousarray(part))
                if w > h:
                    found[:, [0, 2, 4, 6, 8, 10, 12]] += start
                else:
                    found[:, [1, 3, 5, 7, 9, 11, 13]] += start
                rows.append(found)
            found = np.concatenate(rows, axis=0)
        else:
            found = self._detect_rows(rgb)
        return self._faces(found, w, h)

    def _detect_rows(self, rgb: np.ndarray) -> np.ndarray:
        """Detections of both views of ``rgb`` as rows (see ``_run``), in ``rgb``'s pixels."""
        h, w = rgb.shape[:2]
        long_side = max(h, w)
        rows: list[np.ndarray] = []

        # Fine view: the photo itself at up to max_side, when that is sharper than the coarse view.
        coarse_scale = self.coarse_side / (1.5 * long_side)
        fine_scale = min(1.0, self.max_side / long_side)
        source, src_sx, src_sy = rgb, 1.0, 1.0
        if fine_scale > 1.5 * coarse_scale:
            fine, fx, fy = _resize(rgb, fine_scale)
            rows.append(self._run(fine, fx, fy, 0))
            # the coarse view is made from the (much smaller) fine one
            source, src_sx, src_sy = fine, fx, fy
        # Coarse view: 25 % of the longer side as a border on every side, the whole fitted into
        # coarse_side. Resize first, then pad, so a 12 MP photo is never copied at full size.
        small, cx, cy = _resize(source, coarse_scale * src_sx)
        pad = int(round(0.25 * max(small.shape[:2])))
        canvas = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        rows.append(self._run(canvas, cx * src_sx, cy * src_sy, pad))
        return np.concatenate(rows, axis=0)

    def _faces(self, found: np.ndarray, w: int, h: int) -> list[DetectedFace]:
        found = found[np.isfinite(found).all(axis=1)]
        found = found[(found[:, 2] > found[:, 0]) & (found[:, 3] > found[:, 1])]
        if len(found) == 0:
            return []
        # Centre inside the photo: drops anything YuNet imagined in the padding.
        cx = (found[:, 0] + found[:, 2]) / 2
        cy = (found[:, 1] + found[:, 3]) / 2
        found = found[(cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)]
        found = _nms(found, self.nms)
        faces = [
            DetectedFace(
                box=row[:4].astype(np.float32),
                points=row[4:14].reshape(5, 2)[_YUNET_TO_OURS].astype(np.float32),
                score=float(row[14]),
            )
            for row in found
        ]
        faces.sort(key=lambda f: (-round(f.area, 3), -f.score, float(f.box[0]), float(f.box[1])))
        return faces

    def _run(self, image: np.ndarray, sx: float, sy: float, pad: int) -> np.ndarray:
        """Detect on ``image`` (the photo resized by 1/sx, 1/sy, then padded by ``pad``); rows
        (x0, y0, x1, y1, 10 point coordinates, score) in photo pixel coordinates."""
        h, w = image.shape[:2]
        if h < MIN_VIEW or w < MIN_VIEW:  # YuNet answers garbage for tiny inputs: pad right and bottom
            image = cv2.copyMakeBorder(
                image, 0, max(0, MIN_VIEW - h), 0, max(0, MIN_VIEW - w), cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
            h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        with self._lock:
            self._net.setInputSize((w, h))
            _, raw = self._net.detect(bgr)
        if raw is None or len(raw) == 0:
            return np.zeros((0, 15), np.float64)
        raw = raw.astype(np.float64)
        xs = np.concatenate([raw[:, [0]], raw[:, [0]] + raw[:, [2]], raw[:, 4:14:2]], axis=1)
        ys = np.concatenate([raw[:, [1]], raw[:, [1]] + raw[:, [3]], raw[:, 5:14:2]], axis=1)
        # pixel-centre convention on both sides: x_photo = (x_resized + 0.5) * sx - 0.5
        xs = (xs - pad + 0.5) * sx - 0.5
        ys = (ys - pad + 0.5) * sy - 0.5
        out = np.empty((len(raw), 15), np.float64)
        out[:, 0], out[:, 2] = xs[:, 0], xs[:, 1]
        out[:, 1], out[:, 3] = ys[:, 0], ys[:, 1]
        out[:, 4:14:2], out[:, 5:14:2] = xs[:, 2:], ys[:, 2:]
        out[:, 14] = raw[:, 14]
        return out


def _nms(rows: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression by score (stable order for equal scores)."""
    order = np.lexsort((rows[:, 1], rows[:, 0], -rows[:, 14]))
    rows = rows[order]
    keep: list[int] = []
    area = np.maximum(rows[:, 2] - rows[:, 0], 0) * np.maximum(rows[:, 3] - rows[:, 1], 0)
    suppressed = np.zeros(len(rows), bool)
    for i in range(len(rows)):
        if suppressed[i]:
            continue
        keep.append(i)
        ix0 = np.maximum(rows[i, 0], rows[:, 0])
        iy0 = np.maximum(rows[i, 1], rows[:, 1])
        ix1 = np.minimum(rows[i, 2], rows[:, 2])
        iy1 = np.minimum(rows[i, 3], rows[:, 3])
        inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
        iou = inter / np.maximum(area[i] + area - inter, 1e-9)
        suppressed |= iou > iou_threshold
    return rows[keep]
