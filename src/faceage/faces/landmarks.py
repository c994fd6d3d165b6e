"""478 dense face points per detected face with MediaPipe's FaceLandmarker models (run on LiteRT).

The FaceLandmarker runs its own short-range face detector, which misses small faces in group
photos. ``LandmarkModel`` therefore never shows it the whole photo: for each ``DetectedFace`` it
cuts an upright square around the face (rotated by the eye line, ``crop_scale`` times the face
size, resampled to ``crop_size`` pixels — small faces are upscaled), runs the landmarker there,
and maps the points back to photo pixels. Points that do not agree with the detector's eyes are
rejected (``None``), so a neighbour's face in the crop is never returned.

Region names follow our left/right convention (as seen in the image). MediaPipe names regions
from the subject's view, so our ``left_eye`` is MediaPipe's ``RIGHT_EYE``.
"""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

from faceage._native import quiet_native_stderr
from faceage.assets import model_path
from faceage.faces import landmark_topology as topology
from faceage.faces.align import resize_image
from faceage.faces.detect import DetectedFace
from faceage.faces.face_landmarker import FaceLandmarker
from faceage.imageio import check_rgb

NUM_LANDMARKS = 478

# Single points (as seen in the image). Eye contours are the six points that correspond to dlib's
# 68-point eye contours, whose mean FFHQ uses as the eye centre.
LEFT_EYE_CONTOUR6 = (33, 160, 158, 133, 153, 144)
RIGHT_EYE_CONTOUR6 = (362, 385, 387, 263, 373, 380)
LEFT_IRIS_CENTER = 468
RIGHT_IRIS_CENTER = 473
NOSE_TIP = 1
MOUTH_LEFT = 61
MOUTH_RIGHT = 291


def _connection_sets() -> dict[str, list[tuple[int, int]]]:
    return {
        "face_oval": list(topology.FACE_OVAL),
        "lips": list(topology.LIPS),
        "left_eye": list(topology.RIGHT_EYE),
        "right_eye": list(topology.LEFT_EYE),
        "left_brow": list(topology.RIGHT_EYEBROW),
        "right_brow": list(topology.LEFT_EYEBROW),
        "left_iris": list(topology.RIGHT_IRIS),
        "right_iris": list(topology.LEFT_IRIS),
        "nose": list(topology.NOSE),
    }


def _chains(edges: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """Split an edge list into its connected paths/loops, each in walking order."""
    adjacency: dict[int, list[int]] = {}
    for a, b in edges:
        adjacency.setdefault(a, []).append(b)
        adjacency.setdefault(b, []).append(a)
    seen: set[tuple[int, int]] = set()
    chains: list[tuple[int, ...]] = []
    # start open paths at their ends (degree 1), then whatever loops remain
    starts = [n for n in adjacency if len(adjacency[n]) == 1] + list(adjacency)
    for start in starts:
        for nxt in adjacency[start]:
            if (start, nxt) in seen:
                continue
            chain = [start]
            prev, cur = start, nxt
            seen.update({(prev, cur), (cur, prev)})
            while cur != start:
                chain.append(cur)
                options = [n for n in adjacency[cur] if (cur, n) not in seen]
                if not options:
                    break
                prev, cur = cur, options[0]
                seen.update({(prev, cur), (cur, prev)})
            chains.append(tuple(chain))
    return chains


def _build_regions() -> tuple[dict[str, tuple[int, ...]], dict[str, list[tuple[int, ...]]]]:
    indices: dict[str, tuple[int, ...]] = {}
    contours: dict[str, list[tuple[int, ...]]] = {}
    for name, edges in _connection_sets().items():
        indices[name] = tuple(sorted({i for e in edges for i in e}))
        contours[name] = _chains(edges)
    # the nose set is the outline of the lower nose plus the midline (bridge down to the
    # philtrum) drawn across it: drop the edges that lie on the midline, keep the outline
    midline = {168, 6, 197, 195, 5, 4, 1, 19, 94, 2}
    nose = [e for e in _connection_sets()["nose"] if not (e[0] in midline and e[1] in midline)]
    contours["nose"] = _chains(nose)
    # brows come as an upper and a lower line: join them into one closed outline
    for name in ("left_brow", "right_brow"):
        lines = contours[name]
        if len(lines) == 2:
            a, b = lines
            contours[name] = [a + tuple(reversed(b))]
    return indices, contours


@functools.cache
def _regions() -> tuple[dict[str, tuple[int, ...]], dict[str, list[tuple[int, ...]]]]:
    return _build_regions()


def __getattr__(name: str):  # noqa: ANN202 - module attributes built on first use
    # REGION_INDICES: name -> sorted landmark indices of the region (hulls, point sets).
    # REGION_CONTOURS: name -> closed outlines in walking order (lips: outer and inner ring;
    # brows: upper and lower line joined; nose: outline of the lower nose).
    # Built on first use: most callers never need the region tables.
    if name == "REGION_INDICES":
        return _regions()[0]
    if name == "REGION_CONTOURS":
        return _regions()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REGION_NAMES = (
    "face_oval",
    "lips",
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
    "left_iris",
    "right_iris",
    "nose",
)


def region_polygons(landmarks: np.ndarray, name: str) -> list[np.ndarray]:
    """The closed outlines of region ``name`` as float32 (K, 2) point arrays (same coordinates
    as ``landmarks``). For ``lips`` the first outline is the outer one."""
    contours = _regions()[1]
    if name not in contours:
        raise ValueError(f"unknown region '{name}'; known: {', '.join(sorted(contours))}")
    polys = [np.asarray(landmarks, np.float32)[list(c)] for c in contours[name]]
    if name == "lips":
        polys.sort(key=lambda p: -abs(float(cv2.contourArea(p))))
    return polys


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Our five points from dense landmarks: eye centres (mean of the six dlib-equivalent eye
    contour points, as FFHQ does, so gaze does not move them), nose tip, mouth corners."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 2) landmarks, got shape {lm.shape}")
    return np.stack(
        [
            lm[list(LEFT_EYE_CONTOUR6)].mean(axis=0),
            lm[list(RIGHT_EYE_CONTOUR6)].mean(axis=0),
            lm[NOSE_TIP],
            lm[MOUTH_LEFT],
            lm[MOUTH_RIGHT],
        ]
    ).astype(np.float32)


class LandmarkModel:
    """MediaPipe's FaceLandmarker (478 points, ``faces.face_landmarker``) run per detected face.

    Args:
        crop_size: side of the square given to the landmarker (its mesh model works at 256).
        crop_scale: crop side as a multiple of the face size (max of box side and 2.4 x the
            eye-to-mouth distance); 2.0 leaves the landmarker's own detector enough context.
        min_confidence: MediaPipe detection and presence thresholds.
        max_eye_error: reject the result when a mesh eye centre is farther than this fraction of
            the detector's interocular distance from the detector's eye point.

    Calls from several threads are serialised; use one model per thread or process for parallel
    work.
    """

    def __init__(
        self,
        crop_size: int = 256,
        crop_scale: float = 2.0,
        min_confidence: float = 0.3,
        max_eye_error: float = 0.35,
    ) -> None:
        self.crop_size = int(crop_size)
        self.crop_scale = float(crop_scale)
        self.max_eye_error = float(max_eye_error)
        with quiet_native_stderr():  # LiteRT announces its XNNPACK delegate from C++
            self._landmarker = FaceLandmarker(
                model_path("face_detector"),
                model_path("face_mesh"),
                num_faces=2,  # a neighbour may share the crop; we keep the one matching the detector
                min_detection_confidence=min_confidence,
                min_presence_confidence=min_confidence,
            )
        self._lock = threading.Lock()

    def crop_matrix(self, face: DetectedFace) -> np.ndarray:
        """(2, 3) float64 photo → crop matrix of the upright square crop used for ``face``."""
        pts = np.asarray(face.points, np.float64)
        eye_l, eye_r = pts[0], pts[1]
        mouth = (pts[3] + pts[4]) / 2
        eye_mid = (eye_l + eye_r) / 2
        angle = np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
        box = np.asarray(face.box, np.float64)
        extent = max(box[2] - box[0], box[3] - box[1], 2.4 * np.hypot(*(mouth - eye_mid)))
        side = max(extent * self.crop_scale, 8.0)
        centre = 0.5 * (eye_mid + mouth) * 0.5 + 0.25 * (box[:2] + box[2:])
        scale = self.crop_size / side
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        half = (self.crop_size - 1) / 2
        # rotate by -angle about the centre, scale, and put the centre in the middle of the crop
        return np.array(
            [
                [cos, sin, half - cos * centre[0] - sin * centre[1]],
                [-sin, cos, half + sin * centre[0] - cos * centre[1]],
            ]
        )

    def predict(self, rgb: np.ndarray, face: DetectedFace) -> np.ndarray | None:
        """478 (x, y) photo-pixel points (float32) for ``face``, or None if the landmarker did not
        find that face in its crop."""
        rgb = check_rgb(rgb)
        matrix = self.crop_matrix(face)
        n = self.crop_size
        crop = _warp_crop(rgb, matrix, n)
        with self._lock:
            found = self._landmarker.detect(crop)
        if not found:
            return None
        inverse = cv2.invertAffineTransform(matrix)
        pts = np.asarray(face.points, np.float64)
        tolerance = self.max_eye_error * max(np.hypot(*(pts[1] - pts[0])), 1.0)
        best, best_err = None, np.inf
        for marks in found:
            # MediaPipe's normalised coordinates count from the image edge: pixel centre = x*n - 0.5
            xy = marks[:, :2].astype(np.float64) * n - 0.5
            photo = xy @ inverse[:, :2].T + inverse[:, 2]
            eyes = five_points(photo)[:2]
            err = float(np.max(np.hypot(*(eyes - pts[:2]).T)))
            if err < best_err:
                best, best_err = photo, err
        if best is None or best_err > tolerance:
            return None
        return best.astype(np.float32)


def _warp_crop(rgb: np.ndarray, matrix: np.ndarray, n: int) -> np.ndarray:
    """The n x n crop through ``matrix``; a large face is area-downscaled first (no aliasing)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop pixels per photo pixel
    if scale < 0.5:
        h, w = rgb.shape[:2]
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[-1.0, -1.0], [n, -1.0], [n, n], [-1.0, n]]) @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = (max(int(np.floor(v)) - 2, 0) for v in corners.min(axis=0))
        x1, y1 = min(int(np.ceil(corners[:, 0].max())) + 3, w), min(int(np.ceil(corners[:, 1].max())) + 3, h)
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            region, fx, fy = resize_image(rgb[y0:y1, x0:x1], scale)
            # resized pixel q -> region pixel (q + 0.5) f - 0.5 -> photo pixel + (x0, y0)
            to_photo = np.array([[fx, 0.0, 0.5 * fx - 0.5 + x0], [0.0, fy, 0.5 * fy - 0.5 + y0], [0.0, 0.0, 1.0]])
            m = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ to_photo
            return cv2.warpAffine(region, m[:2], (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(rgb, matrix, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
