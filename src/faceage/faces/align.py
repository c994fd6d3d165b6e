"""FFHQ-style face alignment: an oriented square from the eyes and the mouth, warped to N x N.

The recipe is the one used to build FFHQ (NVlabs/ffhq-dataset, ``recreate_aligned_images``), so
official StyleGAN2 checkpoints see faces framed as in their training data:

* ``e2e`` = right eye centre − left eye centre, ``e2m`` = mouth centre − eye midpoint;
* the square's horizontal axis is ``e2e − rot90(e2m)`` (the mean of the eye line and the normal
  of the eye–mouth line), its half side ``max(2 |e2e|, 1.8 |e2m|)``;
* its centre is ``eye midpoint + 0.1 e2m``.

Where the square reaches past the photo, the missing area is filled by mirroring the photo and
blending it progressively toward a blurred copy and then the median colour (as FFHQ does), so the
generator never sees hard black borders. Only the region under the square is ever processed:
aligning a face in a 12 MP photo costs about as much as in a 1 MP one.

Convention (whole module):
    points are float (N, 2) (x, y) pixel coordinates with (0, 0) the centre of the top-left
    pixel (OpenCV's convention); ``matrix`` is float64 (2, 3) mapping photo → aligned
    coordinates, ``aligned = matrix[:, :2] @ photo + matrix[:, 2]`` (cv2.warpAffine's forward
    matrix); its inverse (``invert_affine``) maps aligned → photo.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from faceage.imageio import check_rgb

# Indices of the eye contours and mouth corners in the dense landmark layouts we accept.
_DLIB68 = {"left_eye": list(range(36, 42)), "right_eye": list(range(42, 48)), "mouth_left": 48, "mouth_right": 54}
_MEDIAPIPE = {  # the six points matching dlib's eye contours; left/right as seen in the image
    "left_eye": [33, 160, 158, 133, 153, 144],
    "right_eye": [362, 385, 387, 263, 373, 380],
    "mouth_left": 61,
    "mouth_right": 291,
}


def eyes_and_mouth(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left eye, right eye, mouth left, mouth right) float64 (2,) each, from 5, 68 or 468/478 points.

    Convention:
        5 points: left eye, right eye, nose tip, mouth left, mouth right (as seen in the image).
        68 points: dlib / iBUG layout, eye centre = mean of the six eye contour points (as FFHQ).
        468 or 478 points: MediaPipe face mesh, eye centre = mean of the six equivalent points.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or infinite values")
    n = len(pts)
    if n == 5:
        return pts[0], pts[1], pts[3], pts[4]
    layout: dict[str, Any] | None = {68: _DLIB68, 468: _MEDIAPIPE, 478: _MEDIAPIPE}.get(n)
    if layout is None:
        raise ValueError(f"expected 5, 68, 468 or 478 points, got {n}")
    return (
        pts[layout["left_eye"]].mean(axis=0),
        pts[layout["right_eye"]].mean(axis=0),
        pts[layout["mouth_left"]],
        pts[layout["mouth_right"]],
    )


def ffhq_quad(points: np.ndarray, scale: float = 1.0, shift: float = 0.1) -> np.ndarray:
    """The FFHQ crop square in photo coordinates: float64 (4, 2) corners top-left, bottom-left,
    bottom-right, top-right (of the aligned image).

    ``scale`` > 1 widens the square around the same centre (more hair and background);
    ``shift`` moves the centre from the eye midpoint toward the mouth (0.1 in FFHQ).
    Convention: see the module docstring.
    """
    eye_l, eye_r, mouth_l, mouth_r = eyes_and_mouth(points)
    eye_avg = (eye_l + eye_r) * 0.5
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (mouth_l + mouth_r) * 0.5 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    norm = math.hypot(*x)
    half = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8) * scale
    if norm < 1e-6 or half < 1e-6:
        raise ValueError("degenerate face points: eyes and mouth coincide")
    x = x / norm * half
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * shift
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def alignment_matrix(points: np.ndarray, size: int = 128, scale: float = 1.0, shift: float = 0.1) -> np.ndarray:
    """Photo → aligned similarity transform of the FFHQ recipe for an output of ``size`` pixels.

    Args:
        points: (5, 2) five points, or (68, 2) dlib or (468/478, 2) MediaPipe landmarks.
        size: side of the aligned image.
        scale, shift: see ``ffhq_quad``.

    Returns:
        float64 (2, 3) matrix.

    Convention:
        photo → aligned, pixel centres at integer coordinates. The FFHQ square's outer edges
        map onto the outer edges of the N x N output (pixel centres at 0 … N−1), exactly as the
        FFHQ script's PIL quad transform does.
    """
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size}")
    quad = ffhq_quad(points, scale=scale, shift=shift)
    top_left, top_right = quad[0], quad[3]
    x_axis = top_right - top_left
    side = math.hypot(*x_axis)
    s = size / side
    ux = x_axis / side
    uy = np.array([-ux[1], ux[0]])
    linear = s * np.stack([ux, uy])
    # corner coordinates (edge of the top-left pixel at 0) are centre coordinates + 0.5, on both
    # sides, so the translation gets -0.5 after mapping the top-left corner to 0
    translation = -linear @ top_left - 0.5
    return np.concatenate([linear, translation[:, None]], axis=1)


def resize_matrix(matrix: np.ndarray, size: int, new_size: int) -> np.ndarray:
    """An alignment ``matrix`` made for ``size`` px crops, for ``new_size`` px crops of the same
    square: what ``alignment_matrix(points, new_size)`` gives (pixel centres kept at integers)."""
    k = new_size / size
    out = _check_matrix(matrix) * k
    out[:, 2] += 0.5 * (k - 1.0)
    return out


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix as float64 (2, 3).

    Convention: if ``matrix`` maps photo → aligned, the result maps aligned → photo.
    """
    m = _check_matrix(matrix)
    linear = m[:, :2]
    det = np.linalg.det(linear)
    if abs(det) < 1e-12:
        raise ValueError("matrix is singular and cannot be inverted")
    inv = np.linalg.inv(linear)
    return np.concatenate([inv, (-inv @ m[:, 2])[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points; returns float32 (N, 2).

    Convention: ``out = matrix[:, :2] @ p + matrix[:, 2]`` for every (x, y) point ``p``.
    """
    m = _check_matrix(matrix)
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {pts.shape}")
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def warp_face(rgb: np.ndarray, matrix: np.ndarray, size: int = 128, pad: bool = True) -> np.ndarray:
    """The aligned face: (size, size, 3) uint8 RGB sampled from ``rgb`` through ``matrix``.

    Large faces are first area-downscaled (so the warp never aliases), the warp is supersampled
    when it shrinks, and only the photo region under the aligned square is touched. Where the
    square leaves the photo, ``pad=True`` fills with FFHQ's reflect + progressive blur + median
    padding; ``pad=False`` uses plain reflection.

    Convention:
        ``matrix`` maps photo → aligned (see ``alignment_matrix``); output pixel (u, v) shows the
        photo at ``invert_affine(matrix) @ (u, v, 1)``.
    """
    rgb = check_rgb(rgb)
    m = _check_matrix(matrix)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = rgb.shape[:2]
    s = math.sqrt(abs(np.linalg.det(m[:, :2])))  # aligned pixels per photo pixel
    if s < 1e-9:
        raise ValueError("matrix is singular")
    qsize = size / s  # side of the aligned square in photo pixels
    inverse = invert_affine(m)
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    footprint = corners @ inverse[:, :2].T + inverse[:, 2]

    # 1. crop: the square's bounding box plus a border (FFHQ: 10 % of the side), inside the photo
    shrink = qsize / (2.0 * size)  # > 1: the face is much larger than the output, see step 2
    border = max(int(round(qsize * 0.1)), 3, math.ceil(4 * shrink))
    x0 = max(int(math.floor(footprint[:, 0].min())) - border, 0)
    y0 = max(int(math.floor(footprint[:, 1].min())) - border, 0)
    x1 = min(int(math.ceil(footprint[:, 0].max())) + border + 1, w)
    y1 = min(int(math.ceil(footprint[:, 1].max())) + border + 1, h)
    if x1 <= x0:  # square entirely beside the photo: pad from the nearest column
        x0 = min(x0, w - 1)
        x1 = x0 + 1
    if y1 <= y0:
        y0 = min(y0, h - 1)
        y1 = y0 + 1
    crop = rgb[y0:y1, x0:x1]
    # photo → crop-working coordinates, as a 3x3 matrix we keep composing
    to_work = _translation(-x0, -y0)

    # 2. shrink faces much larger than the output with an area filter (FFHQ's "shrink" step),
    # so the square spans at most 2x the output size in the working image
    if shrink > 1.0:
        crop, fx, fy = resize_image(crop, 1.0 / shrink)
        to_work = _scale_about_centres(1 / fx, 1 / fy) @ to_work
        qsize_work = qsize / math.sqrt(fx * fy)
    else:
        qsize_work = qsize

    # 3. pad where the square (plus bilinear support) leaves the photo
    fp = footprint @ to_work[:2, :2].T + to_work[:2, 2]
    ch, cw = crop.shape[:2]
    need = np.array(
        [
            -math.floor(fp[:, 0].min()) + 2,  # left
            -math.floor(fp[:, 1].min()) + 2,  # top
            math.ceil(fp[:, 0].max()) - (cw - 1) + 2,  # right
            math.ceil(fp[:, 1].max()) - (ch - 1) + 2,  # bottom
        ]
    )
    need = np.maximum(need, 0)
    if need.max() > 0:
        if pad:
            pads = np.where(need > 0, np.maximum(need, int(round(qsize_work * 0.3))), 0)
            crop = _blur_pad(crop, pads, qsize_work)
        else:
            pads = need
            crop = np.pad(crop, ((pads[1], pads[3]), (pads[0], pads[2]), (0, 0)), mode="reflect")
        to_work = _translation(pads[0], pads[1]) @ to_work

    # 4. warp, supersampled when the warp itself still shrinks
    work_to_aligned = _as3x3(m) @ np.linalg.inv(to_work)
    s_work = size / qsize_work
    k = 1 if s_work >= 1.0 else min(4, math.ceil(1.0 / s_work))
    if k > 1:
        work_to_aligned = _scale_about_centres(k, k) @ work_to_aligned
    out = cv2.warpAffine(
        np.ascontiguousarray(crop),
        work_to_aligned[:2],
        (size * k, size * k),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    if k > 1:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def resize_image(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Resize by ``scale`` (area filter when shrinking, bilinear when enlarging).

    Returns the image and the photo pixels per resized pixel along x and y; a photo point maps
    to ``(p + 0.5) / f - 0.5`` in the result. Large reductions take an integer-factor area step
    first (OpenCV's fast path, 2-3x quicker on a 12 MP photo); the up to k-1 pixels at the right
    and bottom edge that do not fill a whole k x k block are dropped, and the factors account
    for it.
    """
    h, w = rgb.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if size == (w, h):
        return rgb, 1.0, 1.0
    if scale >= 1:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), w / size[0], h / size[1]
    k = int(1.0 / scale)
    if k >= 2 and w >= 2 * k and h >= 2 * k:
        w, h = (w // k) * k, (h // k) * k
        rgb = cv2.resize(rgb[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb, w / size[0], h / size[1]


def _blur_pad(crop: np.ndarray, pads: np.ndarray, qsize: float) -> np.ndarray:
    """Reflect-pad ``crop`` by (left, top, right, bottom) and fade the padding to a blur and then
    to the median colour, progressively toward the outer edge (FFHQ's padding)."""
    left, top, right, bottom = (int(p) for p in pads)
    img = np.pad(crop.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    # mask: 1 at the outer edge of a padded side, 0 where the photo starts, negative inside it
    mask = np.full((h, w), -np.inf, np.float32)
    if left:
        mask = np.maximum(mask, 1.0 - xs / left)
    if right:
        mask = np.maximum(mask, 1.0 - (w - 1 - xs) / right)
    if top:
        mask = np.maximum(mask, 1.0 - ys / top)
    if bottom:
        mask = np.maximum(mask, 1.0 - (h - 1 - ys) / bottom)
    mask = mask[:, :, None]
    sigma = max(qsize * 0.02, 0.5)
    blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    # the blur reaches a third of the pad width into the photo, fading out there
    img += (blurred - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    step = max(1, int(math.sqrt(h * w / 65536)))  # the median of a regular subsample is plenty
    median = np.median(img[::step, ::step].reshape(-1, 3), axis=0)
    img += (median - img) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"expected a (2, 3) affine matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("affine matrix contains NaN or infinite values")
    return m


def _as3x3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _scale_about_centres(sx: float, sy: float) -> np.ndarray:
    """Resize by (sx, sy) in pixel-centre coordinates: x' = (x + 0.5) * sx - 0.5."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
