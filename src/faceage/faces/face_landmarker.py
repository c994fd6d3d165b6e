"""MediaPipe's FaceLandmarker graph (image mode) re-run on LiteRT, without the mediapipe package.

The mediapipe wheel depends on opencv-contrib-python, which cannot live beside the
opencv-python-headless every other dependency uses; its two models (BlazeFace short-range detector
and the 478-point attention face mesh, from "BlazeFace: Sub-millisecond Neural Face Detection on
Mobile GPUs" and "Attention Mesh: High-fidelity Face Mesh Prediction in Real-time") run unchanged
in ai-edge-litert. This module repeats the graph's arithmetic step by step (SSD anchors, box
decoding, weighted non-maximum suppression, eye-line rotated region of interest scaled 1.5x,
perspective crop, landmark projection), so its points are those of
``mediapipe.tasks.vision.FaceLandmarker`` on the same image to within float rounding (measured on
26 faces: at most 0.005 px in a 256 px crop; the two runtimes' kernels differ in the last bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DETECTOR_SIZE = 128
MESH_SIZE = 256
NUM_POINTS = 478
_SUPPRESSION_IOU = 0.3  # FaceDetectorOptions.min_suppression_threshold default
_ROI_SCALE = 1.5


@dataclass(frozen=True)
class _Rect:
    """A rotated rectangle in normalised image coordinates (MediaPipe's NormalizedRect)."""

    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float


def _anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range BlazeFace SSD (4 layers, strides 8,16,16,16,
    two anchors per layer per cell, fixed size 1); layers of equal stride share one grid."""
    strides = (8, 16, 16, 16)
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = 2 * (same - layer)  # aspect ratio 1.0 and the interpolated scale, per layer
        cells = math.ceil(DETECTOR_SIZE / strides[layer])
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
        layer = same
    return np.asarray(centres, np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (4,) with boxes ``b`` (N, 4), boxes as xmin, ymin, xmax, ymax."""
    w = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    h = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """MediaPipe's WEIGHTED suppression: each kept box is the score-weighted mean of the boxes
    (and eye/nose points) that overlap the best remaining one by IoU > 0.3."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    while order:
        best = order[0]
        overlap = _iou(boxes[best], boxes[order]) > _SUPPRESSION_IOU
        members = [i for i, o in zip(order, overlap) if o]
        rest = [i for i, o in zip(order, overlap) if not o]
        weights = scores[members][:, None]
        total = float(weights.sum())
        box = (boxes[members] * weights).sum(axis=0) / total
        pts = (points[members].reshape(len(members), -1) * weights).sum(axis=0).reshape(-1, 2) / total
        kept.append((box, pts))
        if len(rest) == len(order):
            break
        order = rest
    return kept


def _roi_crop(rgb: np.ndarray, rect: _Rect, size: int, border: int, value_range: tuple[float, float]) -> np.ndarray:
    """ImageToTensor on the CPU: the rotated rectangle's corners mapped onto the output square by
    a perspective warp (bilinear), then scaled from 0..255 to ``value_range`` as float32."""
    h, w = rgb.shape[:2]
    box = ((rect.x_center * w, rect.y_center * h), (rect.width * w, rect.height * h), math.degrees(rect.rotation))
    src = cv2.boxPoints(box).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    crop = cv2.warpPerspective(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    low, high = value_range
    return (crop.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low))[None]


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


class FaceLandmarker:
    """Dense face points on an RGB image: faces found by BlazeFace, then the face mesh per face.

    Args:
        detector: the BlazeFace short-range ``.tflite`` (128 x 128 input).
        mesh: the 478-point face mesh ``.tflite`` (256 x 256 input).
        num_faces: at most this many faces (the highest scoring).
        min_detection_confidence: BlazeFace score threshold.
        min_presence_confidence: face-mesh presence threshold; below it the face is dropped.
    """

    def __init__(
        self,
        detector: Path,
        mesh: Path,
        num_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.num_faces = int(num_faces)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence_confidence = float(min_presence_confidence)
        self._detector = Interpreter(model_path=str(detector))
        self._mesh = Interpreter(model_path=str(mesh))
        for interpreter in (self._detector, self._mesh):
            interpreter.allocate_tensors()
        self._anchors = _anchors()

    def _run(self, interpreter, tensor: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001 - a LiteRT Interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]

    def _face_rects(self, rgb: np.ndarray) -> list[_Rect]:
        """BlazeFace on the whole image: up to ``num_faces`` regions of interest for the mesh."""
        h, w = rgb.shape[:2]
        if h != w:
            raise ValueError(f"the landmarker expects a square image, got {w}x{h}")
        whole = _Rect(0.5, 0.5, 1.0, 1.0, 0.0)
        tensor = _roi_crop(rgb, whole, DETECTOR_SIZE, cv2.BORDER_CONSTANT, (-1.0, 1.0))
        regressors, classificators = self._run(self._detector, tensor)
        raw = regressors[0].astype(np.float32) / np.float32(DETECTOR_SIZE)
        logits = np.clip(classificators[0, :, 0].astype(np.float64), -100.0, 100.0)
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        keep = scores >= self.min_detection_confidence
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        rects = []
        for box, pts in _weighted_nms(boxes, points, scores)[: self.num_faces]:
            (x0, y0), (x1, y1) = pts[0] * (w, h), pts[1] * (w, h)  # the two eyes set the rotation
            rotation = _normalize_radians(-math.atan2(-(y1 - y0), x1 - x0))
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            centre_x, centre_y = float(box[0]) + width / 2, float(box[1]) + height / 2
            rects.append(_Rect(centre_x, centre_y, width * _ROI_SCALE, height * _ROI_SCALE, rotation))
        return rects

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """For each face found, (478, 3) float32 points normalised to the image size (x, y in
        0..1 from the image's top-left corner; z in the same scale as x), like MediaPipe's
        ``NormalizedLandmark``."""
        faces = []
        for rect in self._face_rects(rgb):
            tensor = _roi_crop(rgb, rect, MESH_SIZE, cv2.BORDER_REPLICATE, (0.0, 1.0))
            outputs = self._run(self._mesh, tensor)
            presence = 1.0 / (1.0 + math.exp(-float(outputs[1].reshape(-1)[0])))
            if presence < self.min_presence_confidence:
                continue
            local = outputs[0].reshape(NUM_POINTS, 3) / np.float32(MESH_SIZE)
            x, y = local[:, 0] - 0.5, local[:, 1] - 0.5
            cos, sin = math.cos(rect.rotation), math.sin(rect.rotation)
            projected = np.stack(
                [
                    (cos * x - sin * y) * rect.width + rect.x_center,
                    (sin * x + cos * y) * rect.height + rect.y_center,
                    local[:, 2] * rect.width,
                ],
                axis=1,
            )
            faces.append(projected.astype(np.float32))
        return faces
