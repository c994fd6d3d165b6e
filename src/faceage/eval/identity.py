"""Independent identity verifiers: SFace (OpenCV zoo, int8) and dlib's ResNet face descriptor.

These judge whether an edited face is still the same person; nothing in faceage trains against
them. Each model is used at its own published operating point (``ACCEPT_THRESHOLDS``):

- ``"sface"``: 128-D embedding of a 112x112 ArcFace-aligned RGB crop (raw 0-255 values, NCHW);
  same person when cosine similarity ≥ 0.363 (OpenCV's ``face_recognition_sface`` sample).
  Embeddings are returned L2-normalised, so a dot product is the cosine.
- ``"dlib"``: 128-D descriptor of ``dlib.get_face_chip(img, shape, 150, 0.25)``; same person when
  the Euclidean distance < 0.6 (dlib's own threshold). Descriptors are returned as dlib gives them.

Landmarks for the alignment come from dlib's 5-point predictor inside each box, or, for SFace,
from the YuNet five points when passed via ``points=``. dlib's 5 points are not ArcFace's: they
are (right eye outer, right eye inner, left eye outer, left eye inner, nose base), "right" meaning
larger x in the image, and there are no mouth corners. SFace crops from dlib points are therefore
aligned onto ``DLIB5_TEMPLATE_112``: where those five dlib points fall, on average, in crops
aligned with the ArcFace template from YuNet's points (median over 584 UTKFace and AAF faces).
On 118 other faces the two alignments gave embeddings with median cosine 0.95 (5th percentile
0.86), and the same impostor acceptance rate (0.56 %).

Convention: images (H, W, 3) uint8 RGB; boxes float (N, 4) ``x0, y0, x1, y1`` with x1, y1
exclusive; points float (N, 5, 2) (x, y) in the faceage order (left eye, right eye, nose tip, mouth
left, mouth right; left = smaller x). Not thread-safe (dlib); use one instance per thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import dlib
import numpy as np
import onnxruntime as ort

from faceage.assets import model_path
from faceage.eval.age_estimator import (
    ALIGNED_FACE_BOX,
    aligned_rectangle,
    box_to_rectangle,
    check_boxes,
    check_face_box,
    check_faces,
    check_rgb,
    hog_detect,
    session_options,
)

__all__ = [
    "ACCEPT_THRESHOLDS",
    "ARCFACE_TEMPLATE_112",
    "DLIB5_TEMPLATE_112",
    "EMBEDDING_DIM",
    "MODELS",
    "IdentityVerifier",
    "VerificationResult",
]

MODELS = ("sface", "dlib")
EMBEDDING_DIM = 128

# Each model's standard operating point, in its native metric:
# sface: cosine similarity, same person when ≥ 0.363 (OpenCV's sample, cosine_similarity_th);
# dlib: Euclidean distance, same person when < 0.6 (dlib's face_recognition example).
ACCEPT_THRESHOLDS: dict[str, float] = {"sface": 0.363, "dlib": 0.6}

# InsightFace's ArcFace 112x112 template, in the faceage order (left eye, right eye, nose tip,
# mouth left, mouth right), as OpenCV's FaceRecognizerSF.alignCrop uses it.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# dlib's 5 points (right eye outer, right eye inner, left eye outer, left eye inner, nose base) in
# the same 112x112 ArcFace frame; see the module docstring for how it was measured.
DLIB5_TEMPLATE_112 = np.array(
    [[81.569, 53.136], [67.039, 54.365], [30.274, 54.062], [44.977, 54.812], [56.629, 81.341]],
    dtype=np.float64,
)
_SFACE_SIZE = 112
_DLIB_CHIP_SIZE = 150
_DLIB_CHIP_PADDING = 0.25
_MAX_BATCH = 64  # faces per SFace run: bounds activation memory (~0.5 GB at 64)


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of comparing embeddings; unpacks as ``score, accepted = verifier.verify(a, b)``.

    Fields are scalars for one pair of (D,) embeddings, or (N,) arrays for batched (N, D) inputs.

    Attributes:
        model: "sface" or "dlib".
        score: similarity, higher = more alike: cosine for sface, ``1 - distance`` for dlib.
        distance: Euclidean distance (dlib's native metric; for sface between unit embeddings).
        accepted: whether the model's standard rule calls it the same person.
        threshold: ``ACCEPT_THRESHOLDS[model]`` in the native metric (sface: score ≥ threshold;
            dlib: distance < threshold).
    """

    model: str
    score: float | np.ndarray
    distance: float | np.ndarray
    accepted: bool | np.ndarray
    threshold: float

    def __iter__(self):
        return iter((self.score, self.accepted))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping src → dst points (Umeyama).

    Returns a float64 (2, 3) forward matrix for cv2.warpAffine. Closed form, so deterministic
    (cv2.estimateAffinePartial2D samples at random).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / variance) if variance > 0 else 1.0
    shift = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, shift[:, None]], axis=1)


class IdentityVerifier:
    """Embed faces and decide "same person" with one independent face recognition model.

    Args:
        model: "sface" (fast, int8 ONNX) or "dlib" (ResNet, about 3x slower).
        threads: onnxruntime intra-op threads for sface; None uses onnxruntime's default.
    """

    def __init__(self, model: str = "sface", threads: int | None = None) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        self.model = model
        self.threshold = ACCEPT_THRESHOLDS[model]
        self._predictor = dlib.shape_predictor(str(model_path("dlib_5pt")))
        self._detector = dlib.get_frontal_face_detector()
        if model == "sface":
            graph = _sface_graph_for_onnxruntime(model_path("sface").read_bytes())
            self._session = ort.InferenceSession(graph, session_options(threads), providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        else:
            session_options(threads)  # same validation; dlib picks its own threads
            self._resnet = dlib.face_recognition_model_v1(str(model_path("dlib_resnet")))

    def __repr__(self) -> str:
        return f"IdentityVerifier(model={self.model!r})"

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Face boxes from dlib's HOG detector, float32 (N, 4); the order ``embed(rgb)`` uses."""
        return hog_detect(self._detector, check_rgb(rgb))

    def embed(self, rgb: np.ndarray, boxes: object = None, points: object = None) -> np.ndarray:
        """Embeddings of the faces in a photo, float32 (N, 128), in box order.

        Args:
            rgb: (H, W, 3) uint8 RGB photo.
            boxes: (N, 4) face boxes; None detects with dlib's HOG detector (when ``points`` is
                also None).
            points: sface only: (N, 5, 2) five points per face (YuNet's, faceage order), used
                for the ArcFace alignment instead of dlib's landmarks; ``boxes`` may then be
                None. The dlib model aligns with its own predictor and rejects ``points``.
        """
        rgb = check_rgb(rgb)
        if points is not None:
            if self.model != "sface":
                raise ValueError("points= is only used by the sface model; dlib aligns with its own 5-point predictor")
            five = _check_points(points)
            if boxes is not None and len(check_boxes(boxes)) != len(five):
                raise ValueError(
                    f"boxes and points must describe the same faces, got {len(check_boxes(boxes))} boxes and {len(five)} point sets"
                )
            crops = [_warp(rgb, similarity_transform(p, ARCFACE_TEMPLATE_112)) for p in five]
            return self._sface(crops)
        boxes = hog_detect(self._detector, rgb) if boxes is None else check_boxes(boxes)
        shapes = [self._predictor(rgb, box_to_rectangle(box)) for box in boxes]
        return self._embed_shapes([rgb] * len(shapes), shapes)

    def embed_aligned(self, faces: object, face_box: Sequence[float] = ALIGNED_FACE_BOX) -> np.ndarray:
        """Embeddings of aligned face crops, float32 (B, 128).

        Args:
            faces: list of (N, N, 3) uint8 RGB crops, or one (B, N, N, 3) array.
            face_box: face region inside each crop, as fractions of the side; the default suits
                faceage's FFHQ-style crops (see ``faceage.eval.age_estimator.ALIGNED_FACE_BOX``).
        """
        crops = check_faces(faces)
        box = check_face_box(face_box)
        shapes = [self._predictor(crop, aligned_rectangle(crop.shape[0], box)) for crop in crops]
        return self._embed_shapes(crops, shapes)

    def similarity(self, a: object, b: object) -> float | np.ndarray:
        """Similarity, higher = more alike: cosine (sface) or ``1 - L2 distance`` (dlib).

        ``a`` and ``b`` are (D,) or (N, D) embeddings (rows broadcast); a float for two (D,).
        """
        return self.verify(a, b).score

    def distance(self, a: object, b: object) -> float | np.ndarray:
        """Euclidean distance between embeddings (dlib's native metric)."""
        return self.verify(a, b).distance

    def verify(self, a: object, b: object) -> VerificationResult:
        """Compare embeddings at the model's standard threshold; batched over rows."""
        ea, single_a = _check_embeddings(a, "a")
        eb, single_b = _check_embeddings(b, "b")
        if len(ea) != len(eb) and 1 not in (len(ea), len(eb)):
            raise ValueError(f"a and b must have the same number of rows (or one), got {len(ea)} and {len(eb)}")
        if self.model == "sface":
            ua = ea / np.maximum(np.linalg.norm(ea, axis=1, keepdims=True), 1e-12)
            ub = eb / np.maximum(np.linalg.norm(eb, axis=1, keepdims=True), 1e-12)
            score = (ua * ub).sum(axis=1)
            distance = np.linalg.norm(ua - ub, axis=1)
            accepted = score >= self.threshold
        else:
            distance = np.linalg.norm(ea - eb, axis=1)
            score = 1.0 - distance
            accepted = distance < self.threshold
        if single_a and single_b:
            return VerificationResult(
                self.model, float(score[0]), float(distance[0]), bool(accepted[0]), self.threshold
            )
        return VerificationResult(
            self.model, score.astype(np.float32), distance.astype(np.float32), accepted, self.threshold
        )

    def _embed_shapes(self, images: Sequence[np.ndarray], shapes: Sequence[dlib.full_object_detection]) -> np.ndarray:
        if self.model == "sface":
            crops = []
            for image, shape in zip(images, shapes):
                five = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
                crops.append(_warp(image, similarity_transform(five, DLIB5_TEMPLATE_112)))
            return self._sface(crops)
        if not shapes:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        chips = [
            dlib.get_face_chip(image, shape, _DLIB_CHIP_SIZE, _DLIB_CHIP_PADDING)
            for image, shape in zip(images, shapes)
        ]
        return np.asarray(self._resnet.compute_face_descriptor(chips), dtype=np.float32)

    def _sface(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        batch = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)  # RGB, raw 0-255
        out = [
            self._session.run(None, {self._input: np.ascontiguousarray(batch[s : s + _MAX_BATCH])})[0]
            for s in range(0, len(batch), _MAX_BATCH)
        ]
        emb = np.concatenate(out).astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    # Same interpolation and border as OpenCV's FaceRecognizerSF.alignCrop.
    return cv2.warpAffine(
        image, matrix, (_SFACE_SIZE, _SFACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def _check_points(points: object) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 5, 2))
    if array.ndim != 3 or array.shape[1:] != (5, 2):
        raise ValueError(f"points must be (N, 5, 2) five (x, y) points per face, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("points must be finite, got NaN or infinity")
    return array


def _check_embeddings(e: object, name: str) -> tuple[np.ndarray, bool]:
    array = np.asarray(e, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] != EMBEDDING_DIM:
        raise ValueError(
            f"{name} must be ({EMBEDDING_DIM},) or (N, {EMBEDDING_DIM}) embeddings, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return array.reshape(-1, EMBEDDING_DIM), array.ndim == 1


# --- SFace graph fix-up ------------------------------------------------------------------------
# The bundled SFace int8 ONNX lists 29 weight tensors as graph inputs that no node reads (the nodes
# read their dequantized copies), so onnxruntime demands them as feeds; and it fixes the batch at 1.
# Without the `onnx` package we edit the protobuf wire format directly: drop graph inputs that are
# initializers or unused, make the first dimension of the remaining input and of the outputs the
# symbol "N", and drop the optional value_info shape hints (which pin batch 1).
# Field numbers from onnx.proto3: ModelProto.graph=7; GraphProto.node=1, initializer=5, input=11,
# output=12, value_info=13; NodeProto.input=1; TensorProto.name=8; ValueInfoProto.name=1, type=2;
# TypeProto.tensor_type=1; Tensor.shape=2; TensorShapeProto.dim=1; Dimension.dim_param=2.


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    i, out = 0, []
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        elif wire == 2:
            length, i = _read_varint(buf, i)
            value, i = buf[i : i + length], i + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in the SFace model")
        out.append((number, wire, value))
    return out


def _message(fields: list[tuple[int, int, int | bytes]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _varint(number << 3 | wire)
        if isinstance(value, int):  # wire type 0
            out += _varint(value)
        elif wire == 2:
            out += _varint(len(value)) + value
        else:
            out += value
    return bytes(out)


def _get(fields: list[tuple[int, int, int | bytes]], number: int) -> list[bytes]:
    """The length-delimited values of field ``number``."""
    return [v for n, _, v in fields if n == number and isinstance(v, bytes)]


def _edit(buf: bytes, number: int, edit) -> bytes:
    return _message([(n, w, edit(v) if n == number else v) for n, w, v in _fields(buf)])


def _dynamic_batch(value_info: bytes) -> bytes:
    def shape(buf: bytes) -> bytes:
        dims = _fields(buf)
        first = next(i for i, (n, _, _) in enumerate(dims) if n == 1)
        dims[first] = (1, 2, _message([(2, 2, b"N")]))
        return _message(dims)

    return _edit(value_info, 2, lambda t: _edit(t, 1, lambda tensor: _edit(tensor, 2, shape)))


def _sface_graph_for_onnxruntime(model: bytes) -> bytes:
    top = _fields(model)
    graph = _fields(_get(top, 7)[0])
    read = {name.decode() for node in _get(graph, 1) for name in _get(_fields(node), 1)}
    initializers = {_get(_fields(t), 8)[0].decode() for t in _get(graph, 5)}
    kept = []
    for number, wire, value in graph:
        if number == 11:
            assert isinstance(value, bytes)  # field 11 (a graph's value_info) is a message
            name = _get(_fields(value), 1)[0].decode()
            if name in initializers or name not in read:
                continue
            value = _dynamic_batch(value)
        elif number == 12:
            assert isinstance(value, bytes)  # field 12 (a graph output) is a message
            value = _dynamic_batch(value)
        elif number == 13:
            continue
        kept.append((number, wire, value))
    return _message([(n, w, _message(kept) if n == 7 else v) for n, w, v in top])
