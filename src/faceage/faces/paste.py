"""Put an edited aligned face back into its photo, touching only the face region.

Two ways:

* ``paste_back``: inverse-warp the edited face and blend it over the photo with a feathered mask.
  The face keeps the resolution of the aligned image (a 128 px face pasted into a 12 MP photo
  looks soft).
* ``paste_delta``: warp only the *change* (edited − reconstructed, both aligned) and add it to the
  photo's own pixels. Skin, hair and background keep the photo's full sharpness; only what the
  model changed (wrinkles, shape, colour) comes in at the model's resolution.

Both return a new photo: the input is never modified, and every pixel outside the mask's support
(the face region) equals the input exactly. Only the bounding box of that support is warped and
blended, so the cost depends on the face's size, not the photo's.

Convention:
    ``matrix`` is float64 (2, 3) photo → aligned (as from ``align.alignment_matrix``); masks are
    (N, N) in aligned space, 1 = take the edited face, 0 = keep the photo; images are (H, W, 3)
    uint8 RGB.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceage.faces.align import _as3x3, _check_matrix, _scale_about_centres, _translation, invert_affine
from faceage.imageio import check_rgb

# Mask values below this cannot move a uint8 pixel by half a level (255 / 512 < 0.5): they are
# dropped, so the touched region is exactly where the photo can change.
_MIN_ALPHA = 1.0 / 512.0


def default_mask(size: int, feather: float | None = None) -> np.ndarray:
    """Feathered elliptical face-region mask in FFHQ-aligned space, float32 (size, size) in [0, 1].

    The ellipse (centre at 50 %, 53 % of the side; half-axes 31 % and 40 %) covers forehead to chin
    and cheek to cheek of an FFHQ-aligned face, with its edge faded over ``feather`` pixels inside
    the ellipse (default ``size / 16``).

    Convention: aligned pixel coordinates, pixel centres at integers.
    """
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    ellipse = np.zeros((size, size), np.uint8)
    scale = 16  # sub-pixel precision for cv2.ellipse (shift=4)
    centre = (int(round((0.5 * size - 0.5) * scale)), int(round((0.53 * size - 0.5) * scale)))
    axes = (int(round(0.31 * size * scale)), int(round(0.40 * size * scale)))
    cv2.ellipse(ellipse, centre, axes, 0.0, 0.0, 360.0, 1, thickness=-1, lineType=cv2.LINE_AA, shift=4)
    return feather_mask(ellipse.astype(np.float32), feather)


def feather_mask(mask: np.ndarray, feather: float | None = None) -> np.ndarray:
    """Turn an aligned (N, N) bool/float mask into a soft blend weight, float32 in [0, 1].

    The mask is eroded by ``feather / 2`` and blurred (sigma ``feather / 6``), so the weight fades
    from 1 to 0 over ``feather`` pixels ending at the original mask edge (never outside); it is 0 on the
    outermost pixels of the aligned square, so nothing from outside the square is ever pasted.
    ``feather`` defaults to N / 16; 0 keeps the mask's own edge.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square (N, N) mask, got shape {m.shape}")
    if m.dtype == bool:
        m = m.astype(np.float32)
    elif np.issubdtype(m.dtype, np.integer):
        m = m.astype(np.float32) / (255.0 if m.max() > 1 else 1.0)
    else:
        m = np.clip(np.nan_to_num(m.astype(np.float32)), 0.0, 1.0)
    n = m.shape[0]
    feather = n / 16.0 if feather is None else float(feather)
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    if feather > 0:
        radius = int(round(feather / 2))
        if radius > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            m = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        sigma = feather / 6.0  # ±3 sigma = the feather width, centred on the eroded edge
        if sigma >= 0.3:
            m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    m[[0, -1], :] = 0.0
    m[:, [0, -1]] = 0.0
    m[m < _MIN_ALPHA] = 0.0
    m[m > 1.0 - _MIN_ALPHA] = 1.0
    return np.ascontiguousarray(np.clip(m, 0.0, 1.0), dtype=np.float32)


def paste_back(
    photo: np.ndarray,
    face: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Blend the aligned ``face`` (N, N, 3) into a copy of ``photo`` through ``matrix``.

    ``mask`` (N, N, bool or float) is where the face is taken, feathered by ``feather`` aligned
    pixels (see ``feather_mask``); None uses ``default_mask``. Returns the new photo, or writes
    into ``out`` (``photo``'s shape) and returns it. ``out`` may be ``photo`` itself, to paste
    several faces with one copy of a 12 MP photo instead of one per face::

        result = photo.copy()
        for face, edited in zip(faces, edits):
            paste_back(result, edited, face.matrix, out=result)
    """
    photo = check_rgb(photo, "photo")
    face = check_rgb(face, "face")
    n = _square_side(face, "face")
    alpha = _blend_weight(mask, n, feather)
    region, inv = _region(photo.shape, matrix, alpha)
    out = _output(photo, out)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    face, alpha, inv = _prefilter(face, alpha, inv)
    warped = _to_region(face, inv, region, cv2.BORDER_REPLICATE, smooth=True)
    weight = _to_region(alpha, inv, region, cv2.BORDER_CONSTANT, smooth=False)
    base = photo[y0:y1, x0:x1]
    # blendLinear rounds; where the weight is 0 it returns the photo's value exactly
    out[y0:y1, x0:x1] = cv2.blendLinear(base, warped, 1.0 - weight, weight)
    return out


def paste_delta(
    photo: np.ndarray,
    edited: np.ndarray,
    reconstructed: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float | None = None,
    out: np.ndarray | None = None,
    keep_gamut: bool = False,
) -> np.ndarray:
    """Add the model's change (``edited`` − ``reconstructed``, aligned (N, N, 3)) to a copy of
    ``photo``, weighted by the feathered ``mask`` (None: ``default_mask``) and upsampled smoothly.

    ``reconstructed`` is the model's output for the unedited face (its reconstruction of the
    aligned input), so what the model cannot reproduce (fine texture, sharpness) is taken from the
    photo instead of being lost. Returns the new photo (or ``out``, as in ``paste_back``).
    ``keep_gamut``: add with ``add_in_gamut`` (a pixel's delta shortened as a whole, so its colour
    is kept) instead of clipping each channel (which keeps more of a large change's strength).
    """
    photo = check_rgb(photo, "photo")
    edited = check_rgb(edited, "edited")
    reconstructed = check_rgb(reconstructed, "reconstructed")
    n = _square_side(edited, "edited")
    if reconstructed.shape != edited.shape:
        raise ValueError(f"edited and reconstructed differ in shape: {edited.shape} vs {reconstructed.shape}")
    alpha = _blend_weight(mask, n, feather)
    region, inv = _region(photo.shape, matrix, alpha)
    out = _output(photo, out)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    delta = (edited.astype(np.float32) - reconstructed.astype(np.float32)) * alpha[:, :, None]
    delta, _, inv = _prefilter(delta, alpha, inv)
    warped = _to_region(delta, inv, region, cv2.BORDER_CONSTANT, smooth=True)
    if keep_gamut:
        out[y0:y1, x0:x1] = add_in_gamut(photo[y0:y1, x0:x1], warped)
    else:  # saturating, rounding add; a zero delta leaves the photo's value exactly
        out[y0:y1, x0:x1] = cv2.add(photo[y0:y1, x0:x1], warped, dtype=cv2.CV_8U)
    return out


def add_in_gamut(base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``base`` (uint8 RGB) + ``delta`` (float), rounded, with the whole delta vector of a pixel
    shortened just enough to stay in 0..255 instead of clipping each channel on its own.

    Clipping channels separately changes a pixel's colour (a brightening on a near-white red cheek
    would clip R and not G/B and desaturate it; on a grayscale photo it can even create colour);
    shortening the vector keeps the delta's own direction. A zero delta leaves ``base`` exactly.
    """
    b = base.astype(np.float32)
    d = np.asarray(delta, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(d > 0, (255.0 - b) / d, np.where(d < 0, -b / d, np.inf))
    t = np.minimum(room.min(axis=-1, keepdims=True), 1.0)
    return np.clip(np.rint(b + t * d), 0, 255).astype(np.uint8)


def _to_region(
    image: np.ndarray, inv: np.ndarray, region: tuple[int, int, int, int], border: int, smooth: bool
) -> np.ndarray:
    """Resample an aligned image onto the photo region (x0, y0, x1, y1).

    A large upscale is done in two steps, a rotating warp to an intermediate grid ``z`` times
    coarser than the photo (still at least as fine as the aligned image), then a plain resize by
    ``z``: warpAffine is costly per output pixel (float images especially), resize is cheap.
    ``smooth`` upsamples with bicubic (images) instead of bilinear (masks).
    """
    x0, y0, x1, y1 = region
    bw, bh = x1 - x0, y1 - y0
    zoom = _upscale(inv)
    z = int(zoom) if zoom >= 2.0 else 1
    iw, ih = -(-bw // z), -(-bh // z)
    # intermediate pixel → photo region pixel → photo pixel → aligned pixel
    to_aligned = np.linalg.inv(inv) @ _translation(x0, y0) @ _scale_about_centres(z, z)
    interp = cv2.INTER_CUBIC if smooth and z == 1 and zoom > 1.5 else cv2.INTER_LINEAR
    small = cv2.warpAffine(
        image, to_aligned[:2], (iw, ih), flags=interp | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0
    )
    if z == 1:
        return small
    up = cv2.resize(small, (iw * z, ih * z), interpolation=cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR)
    return np.ascontiguousarray(up[:bh, :bw])


def _output(photo: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return photo.copy()
    if not isinstance(out, np.ndarray) or out.shape != photo.shape or out.dtype != np.uint8 or not out.flags.writeable:
        raise ValueError(f"out must be a writeable uint8 array of shape {photo.shape}")
    if out is not photo:
        np.copyto(out, photo)
    return out


def _square_side(image: np.ndarray, what: str) -> int:
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"{what}: expected a square aligned image, got shape {image.shape}")
    return image.shape[0]


def _blend_weight(mask: np.ndarray | None, n: int, feather: float | None) -> np.ndarray:
    if mask is None:
        return default_mask(n, feather)
    if np.shape(mask) != (n, n):
        raise ValueError(f"mask must have the aligned face's shape ({n}, {n}), got {np.shape(mask)}")
    return feather_mask(mask, feather)


def _region(photo_shape: tuple[int, ...], matrix: np.ndarray, alpha: np.ndarray):  # noqa: ANN202
    """Photo bounding box (x0, y0, x1, y1) of the mask's support, or None if it misses the photo;
    plus the aligned → photo matrix as 3x3."""
    inv = _as3x3(invert_affine(_check_matrix(matrix)))
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if len(rows) == 0:
        return None, inv
    # support box in aligned coordinates, one pixel of interpolation reach on every side
    u0, u1, v0, v1 = cols[0] - 1.0, cols[-1] + 1.0, rows[0] - 1.0, rows[-1] + 1.0
    corners = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    pts = corners @ inv[:2, :2].T + inv[:2, 2]
    h, w = photo_shape[:2]
    x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None, inv
    return (x0, y0, x1, y1), inv


def _upscale(inv: np.ndarray) -> float:
    """Photo pixels per aligned pixel."""
    return math.sqrt(abs(np.linalg.det(inv[:2, :2])))


def _prefilter(image: np.ndarray, alpha: np.ndarray, inv: np.ndarray):  # noqa: ANN202
    """Area-downscale the aligned image and mask first when the photo face is much smaller than
    the aligned one (e.g. a 1024 px result pasted on a 200 px face), so the warp does not alias."""
    zoom = _upscale(inv)
    if zoom >= 0.5:
        return image, alpha, inv
    n = image.shape[0]
    small = max(8, int(round(n * zoom * 2)))
    f = small / n
    image = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (small, small), interpolation=cv2.INTER_AREA)
    return image, alpha, inv @ np.linalg.inv(_scale_about_centres(f, f))


def warp_photo(
    photo: np.ndarray,
    flow: np.ndarray,
    matrix: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Apply an aligned-space shape change to the photo at the photo's own resolution.

    ``flow`` (N, N, 2) float32 is a backward displacement in aligned pixels: aligned pixel q of
    the result shows the input's aligned position q + flow[q]. For every photo pixel p near the
    face: q = M p, and the photo is sampled at M^-1 (q + flow[q]) = p + A^-1 flow[q] (A: M's
    linear part), bicubic, so the warped face keeps the photo's sharpness. Pixels where the flow
    is zero (below 1/100 px) are not touched. Returns a new photo (or ``out``).
    """
    photo = check_rgb(photo, "photo")
    flow = np.asarray(flow, np.float32)
    n = flow.shape[0]
    if flow.shape != (n, n, 2):
        raise ValueError(f"flow must be (N, N, 2), got {flow.shape}")
    moving = (np.abs(flow) > 0.01).any(axis=2).astype(np.float32)
    region, inv = _region(photo.shape, matrix, moving)
    out = _output(photo, out)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    m = _as3x3(_check_matrix(matrix))
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    qx = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]).astype(np.float32)
    qy = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]).astype(np.float32)
    fx = cv2.remap(
        np.ascontiguousarray(flow[..., 0]), qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    fy = cv2.remap(
        np.ascontiguousarray(flow[..., 1]), qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    a = inv[:2, :2]  # aligned → photo, linear part
    map_x = (xs + a[0, 0] * fx + a[0, 1] * fy).astype(np.float32)
    map_y = (ys + a[1, 0] * fx + a[1, 1] * fy).astype(np.float32)
    warped = cv2.remap(photo, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    still = (np.abs(fx) < 0.01) & (np.abs(fy) < 0.01)
    warped[still] = photo[y0:y1, x0:x1][still]
    out[y0:y1, x0:x1] = warped
    return out
