"""Semantic masks of an aligned face, from its 478 MediaPipe landmarks plus a person mask.

No bundled model parses faces, so the face regions are polygons through
landmarks of the MediaPipe face mesh, and hair and background come from the person segmenter.

Classes and how they relate (``face_masks``):

    skin        the face oval minus eyes, brows and lips, its top edge moved to the hairline
                (below). The nose is skin: it ages like skin and GLS-Age models "face skin" as
                one region, so ``nose`` is a SUBSET of ``skin``.
    eyes        both eye openings (lid margins), iris included.
    brows       both eyebrows.
    lips        the outer lip contour, filled: lips and the inner mouth (teeth) together.
    nose        the convex hull of the nose landmarks (bridge, tip, alae); inside ``skin``.
    hair        person pixels outside the face oval and above the mouth-corner line, plus hair
                found inside the oval's top (below).
    background  not person; the face oval always counts as person.

``skin``, ``eyes``, ``brows``, ``lips``, ``hair`` and ``background`` are pairwise disjoint;
``nose`` lies inside ``skin``. Person pixels below the mouth line and outside the oval (neck,
clothes, shoulders, long hair below the jaw) belong to no class.

Hair heuristic: the segmenter cannot tell hair from neck or clothes, and landmarks stop at the
face oval. Hair is therefore the person minus the face oval, restricted to the half-plane above
the line through the two mouth corners, measured in the face's own up direction (chin → forehead),
so it holds for tilted faces too. Below that line the jaw meets the neck, and everything there is
left unclassified.

Hairline refinement (``refine=True``, the default): the oval's top edge (landmark 10 and its
neighbours) lies near, not on, the hairline. Above the brows only, pixels are compared with the
cheeks' skin colour: a fringe inside the oval becomes hair, skin-coloured forehead or scalp above
the oval (within its width and ``_SCALP_REACH`` of its height above it) becomes skin, each only
where connected to the region it joins.

Known limits: ears count as hair; hair of nearly skin colour is not separated from the forehead,
and a fringe is found only where it is darker than the cheeks (blond or grey fringes stay skin);
hats, glasses and other accessories are not detected (hats count as hair, glasses as face);
hair hanging below the mouth line is missed; on a crop so tight that alignment pads it (UTKFace),
the blurred padding confuses the segmenter and the hairline refinement.

Convention: masks are bool (H, W) arrays on the aligned image's pixel grid; landmarks are float
(x, y) in that image's pixels, origin at the top-left pixel's centre (OpenCV's).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import cv2
import numpy as np

from faceage.faces import landmarks as face_landmarks
from faceage.faces.landmarks import (
    LEFT_EYE_CONTOUR6,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NUM_LANDMARKS,
    RIGHT_EYE_CONTOUR6,
    region_polygons,
)
from faceage.faces.segment import PersonSegmenter
from faceage.imageio import check_rgb

MASK_NAMES = ("skin", "eyes", "brows", "lips", "nose", "hair", "background")

# MediaPipe face-mesh indices of the single points the heuristics use.
CHIN, FOREHEAD = 152, 10  # bottom and top of the face oval, on the face's midline
MOUTH_CORNERS = (MOUTH_LEFT, MOUTH_RIGHT)
EYE_CONTOURS = LEFT_EYE_CONTOUR6 + RIGHT_EYE_CONTOUR6

# Hairline refinement (``_hairline_moves``): colours are 8-bit Lab (L, a, b all 0..255).
_SKIN_DISTANCE = 3.0  # robust deviations from the cheeks' median colour that still count as skin
_SPREAD_FLOOR = np.array([10.0, 3.0, 3.0], np.float32)  # least deviation per channel: flat lighting
_MIN_SAMPLE = 20  # cheek pixels needed to trust the colour model; fewer: no refinement
_SCALP_REACH = 0.3  # skin may extend above the oval's top by this fraction of the oval's height

# Overlay colours (RGB), fixed per class, and the order they are painted in (later on top).
COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (40, 90, 200),
    "hair": (150, 60, 220),
    "skin": (255, 180, 120),
    "nose": (255, 110, 0),
    "brows": (120, 60, 0),
    "eyes": (0, 230, 230),
    "lips": (230, 0, 80),
}
_PAINT_ORDER = ("background", "hair", "skin", "nose", "brows", "eyes", "lips")

# Subpixel precision for cv2.fillPoly: coordinates are fixed-point with this many fraction bits.
_SHIFT = 4


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be ({NUM_LANDMARKS}, 2) MediaPipe points, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return points.astype(np.float64)


def _check_mask(mask: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{what} must have the image's shape {shape}, got {mask.shape}")
    return mask


def _fill(shape: tuple[int, int], polygons: Iterable[np.ndarray]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    scale = float(1 << _SHIFT)
    fixed = [np.round(np.asarray(p, np.float64) * scale).astype(np.int32).reshape(-1, 1, 2) for p in polygons]
    cv2.fillPoly(canvas, fixed, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


@functools.lru_cache(maxsize=1)
def _default_segmenter() -> PersonSegmenter:
    return PersonSegmenter()


def face_masks(
    image: np.ndarray, landmarks: np.ndarray, person: np.ndarray | None = None, *, segmenter=None, refine: bool = True
) -> dict[str, np.ndarray]:
    """Semantic masks of one aligned face (see the module docstring for the classes).

    Args:
        image: (N, N, 3) uint8 RGB aligned face (any (H, W, 3) works).
        landmarks: (478, 2) MediaPipe points in ``image``'s pixel coordinates.
        person: (H, W) person mask on the same grid: float probability (person where >= 0.5)
            or bool. If None, it is predicted from ``image`` with ``segmenter`` (by default one
            ``PersonSegmenter`` shared by the process, created on first use).
        segmenter: object with ``predict(rgb) -> (H, W) float``, used only when ``person`` is None.
        refine: move the skin/hair border above the brows to where the colour changes (see the
            module docstring); False gives the purely geometric masks.

    Returns:
        ``{name: bool (H, W)}`` for every name in ``MASK_NAMES``, in that order.
    """
    image = check_rgb(image)
    points = _check_landmarks(landmarks)
    shape = image.shape[:2]
    if person is None:
        person = (segmenter or _default_segmenter()).predict(image)
    person = _check_mask(person, shape, "person mask")
    person = person if person.dtype == bool else person >= 0.5

    def region(*names: str) -> np.ndarray:
        return _fill(shape, [p for name in names for p in region_polygons(points, name)])

    oval = region("face_oval")
    eyes = region("left_eye", "right_eye") & oval
    # The outer lip outline, filled, covers the inner mouth too (the inner ring is not a hole).
    lips = _fill(shape, region_polygons(points, "lips")[:1]) & oval & ~eyes
    brows = region("left_brow", "right_brow") & oval & ~eyes & ~lips
    skin = oval & ~(eyes | brows | lips)
    nose_hull = cv2.convexHull(points[list(face_landmarks.REGION_INDICES["nose"])].astype(np.float32))
    nose = _fill(shape, [nose_hull.reshape(-1, 2)]) & skin

    # Landmarks trump the segmenter inside the face: the oval is always person.
    person = person | oval
    up = points[FOREHEAD] - points[CHIN]
    norm = float(np.hypot(*up))
    if norm < 1e-6:
        raise ValueError("landmarks are degenerate: chin and forehead coincide")
    up /= norm
    ys, xs = np.indices(shape, dtype=np.float64)
    height = xs * up[0] + ys * up[1]  # distance along the face's up direction, up to a constant
    hair = person & ~oval & (height > points[list(MOUTH_CORNERS)].mean(axis=0) @ up)

    if refine:
        right = np.array([-up[1], up[0]])  # the face's left-to-right direction, as seen
        lateral = xs * right[0] + ys * right[1]
        to_hair, to_skin = _hairline_moves(image, points, (up, right), (height, lateral), skin & ~nose, hair)
        skin = (skin & ~to_hair) | to_skin
        hair = (hair & ~to_skin) | to_hair

    return {"skin": skin, "eyes": eyes, "brows": brows, "lips": lips, "nose": nose, "hair": hair, "background": ~person}


def _hairline_moves(
    image: np.ndarray,
    points: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray],
    coords: tuple[np.ndarray, np.ndarray],
    skin: np.ndarray,
    hair: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Where the oval's top edge misses the real hairline: (skin → hair, hair → skin) bool masks.

    Only pixels above the highest brow point change. A pixel there is skin-coloured when its Lab
    colour is within ``_SKIN_DISTANCE`` robust deviations of the cheeks' median colour. Darker
    skin pixels of another colour (a fringe) become hair when connected to the hair outside the
    oval; skin-coloured "hair" pixels (a high forehead, a bald scalp) become skin when connected
    to the forehead, within the oval's width and ``_SCALP_REACH`` oval heights above its top
    (beyond that, skin-coloured walls or the blurred padding of a tight crop would leak in).
    Both moves stop at the first pixel of the other colour, so shadows or stray blobs away from
    the hairline stay as they were.

    ``axes`` are the face's unit (up, right) vectors; ``coords`` every pixel's position along them.
    """
    (up, right), (height, lateral) = axes, coords
    nothing = np.zeros_like(hair)
    eye_line = points[list(EYE_CONTOURS)].mean(axis=0) @ up
    mouth_line = points[list(MOUTH_CORNERS)].mean(axis=0) @ up
    cheeks = skin & (height < eye_line) & (height > mouth_line)
    if cheeks.sum() < _MIN_SAMPLE:
        return nothing, nothing
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    sample = lab[cheeks].astype(np.float32)
    median = np.median(sample, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(sample - median), axis=0), _SPREAD_FLOOR)

    regions = face_landmarks.REGION_INDICES  # built on first use
    brows = regions["left_brow"] + regions["right_brow"]
    band = (skin | hair) & (height > (points[list(brows)] @ up).max())
    colours = lab[band].astype(np.float32)  # only the band is classified: the rest cannot move
    skin_coloured, darker = np.zeros_like(band), np.zeros_like(band)
    skin_coloured[band] = (((colours - median) / spread) ** 2).sum(axis=1) <= _SKIN_DISTANCE**2
    # A fringe must also be darker than the cheeks: a forehead's specular highlight is not
    # skin-coloured either, but it is brighter.
    darker[band] = colours[:, 0] < median[0]
    fringe = _opened(skin & band & ~skin_coloured & darker)
    oval = points[list(regions["face_oval"])]
    oval_height, oval_lateral = oval @ up, oval @ right
    reach = oval_height.max() + _SCALP_REACH * (oval_height.max() - oval_height.min())
    head = (height < reach) & (lateral > oval_lateral.min()) & (lateral < oval_lateral.max())
    scalp = _opened(hair & band & head & skin_coloured)
    return _connected_to(fringe, hair), _connected_to(scalp, skin & band & skin_coloured)


def _opened(mask: np.ndarray) -> np.ndarray:
    # A 3x3 opening drops single-pixel noise (JPEG, pores) before regions are grown.
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def _connected_to(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The candidate pixels 8-connected (through candidates) to any seed pixel."""
    count, labels = cv2.connectedComponents((candidates | seeds).astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[seeds])] = True
    keep[0] = False
    return candidates & keep[labels]


def combine(masks: Mapping[str, np.ndarray], names: Iterable[str]) -> np.ndarray:
    """Union of the named masks, bool (H, W). An empty ``names`` gives an all-False mask."""
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not masks:
        raise ValueError("masks is empty: nothing to combine")
    missing = [n for n in names if n not in masks]
    if missing:
        raise ValueError(f"unknown mask name(s) {missing}; available: {sorted(masks)}")
    shape = next(iter(masks.values())).shape
    out = np.zeros(shape, dtype=bool)
    for name in names:
        out |= _check_mask(masks[name], shape, f"mask '{name}'").astype(bool)
    return out


def non_age_mask(masks: Mapping[str, np.ndarray], grow: int = 0) -> np.ndarray:
    """The region GLS-Age removes before aging: hair and background, bool (H, W).

    GLS-Age also removes accessories such as glasses, earrings and hats. None of the bundled
    models can detect them (the selfie segmenter counts them as person, and landmarks ignore
    them), so they are NOT in this mask: glasses stay inside the face region. Pass a mask of your
    own to ``inpaint_non_age`` if you have one.

    Args:
        masks: the output of ``face_masks``.
        grow: dilate the region by this many pixels, so that stray hair pixels at its border
            (which Telea would otherwise spread inwards) are covered too.
    """
    region = combine(masks, ("hair", "background"))
    if grow < 0:
        raise ValueError(f"grow must be >= 0, got {grow}")
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        region = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
    return region


def inpaint_non_age(image: np.ndarray, mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """Fill ``mask`` from its surroundings with Telea's fast-marching inpainting (GLS-Age, *Face aging by global–local co-embedding and semantic-mask-driven editing*).

    Returns a new (H, W, 3) uint8 RGB image equal to ``image`` outside ``mask``.
    """
    image = check_rgb(image)
    mask = _check_mask(mask, image.shape[:2], "mask").astype(bool)
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    out = image.copy()
    if mask.any():
        filled = cv2.inpaint(image, mask.astype(np.uint8), float(radius), cv2.INPAINT_TELEA)
        out[mask] = filled[mask]
    return out


def mask_overlay(
    image: np.ndarray, masks: Mapping[str, np.ndarray], alpha: float = 0.5, legend: bool = True
) -> np.ndarray:
    """Tint each class of ``masks`` with its fixed colour (``COLOURS``) and draw a small legend.

    Returns a new (H, W, 3) uint8 RGB image; pixels in no mask keep their values (except under
    the legend, top-left, which lists the non-empty classes).
    """
    image = check_rgb(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    unknown = sorted(set(masks) - set(COLOURS))
    if unknown:
        raise ValueError(f"no colour for mask(s) {unknown}; known: {list(MASK_NAMES)}")
    out = image.astype(np.float32)
    shown = []
    for name in _PAINT_ORDER:
        if name not in masks:
            continue
        mask = _check_mask(masks[name], image.shape[:2], f"mask '{name}'").astype(bool)
        if mask.any():
            out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(COLOURS[name], np.float32)
            shown.append(name)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if legend and shown:
        _draw_legend(out, shown)
    return out


def _draw_legend(canvas: np.ndarray, names: list[str]) -> None:
    height = canvas.shape[0]
    scale = max(0.25, min(0.6, height / 900))
    (_, text_h), _ = cv2.getTextSize("Hg", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    row = text_h + 4
    swatch = text_h
    width = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in names) + swatch + 8
    box = canvas[: row * len(names) + 3, : width + 3]
    box //= 3  # darken the legend's box so the text reads on any image
    for i, name in enumerate(names):
        y = 2 + i * row
        cv2.rectangle(canvas, (2, y), (2 + swatch, y + swatch), COLOURS[name], -1)
        cv2.putText(
            canvas, name, (6 + swatch, y + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
