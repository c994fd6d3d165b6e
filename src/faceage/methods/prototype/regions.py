"""Where each step may act on one aligned face: face region, protected eyes and mouth, hair,
non-age regions and the lower face (beard).

Hair and background are *non-age* regions (GLS-Age's semantic-mask-driven editing): they are kept
out of the colour and detail steps, and inpainted before the detail bands are taken so their
edges are not sharpened into the face. Computed once per face on the input (the shape step then
warps them with the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceage.faces import mesh
from faceage.faces.landmarks import region_polygons
from faceage.faces.masks import face_masks
from faceage.faces.segment import PersonSegmenter

HAIR_REACH = 1.6  # hair is greyed within this multiple of the face oval's size around its centre,
HAIR_SURE = 1.35  # all of it within this one, further out only where it looks like hair
HAIR_UNLIKE_LAB = (15.0, 25.0)  # Lab distance from the skin: hair from this far, surely from the sum
EYE_REACH = 0.06  # the ring around each eye, as a share of the face size
HAIR_TEXTURE = (1.5, 2.5)  # local detail (grey levels) from which a pixel counts as textured like hair
HAIR_DARKER = (10.0, 30.0)  # L levels darker than the skin from which a pixel counts as hair, surely hair
HAIR_FAINT = (0.8, 0.3)  # detail (grey levels) from which hair beyond an adult's reach counts, surely
HAIR_CONNECTED = 0.2  # hair weight that counts as hair when following it beyond an adult's reach
HAIR_HUE = 6.0  # Lab a/b units below neutral (green, blue) over which a pixel stops counting as hair


@dataclass(frozen=True, eq=False)
class Regions:
    """(S, S) float32 weights in [0, 1] (``nonage`` bool) on one aligned face.

    edit     where colour and detail change: the face oval, eroded and feathered, without hair,
             eye openings and the inner mouth.
    hair     hair near the head that looks like hair (greying).
    nonage   hair or background (inpainted before the detail bands are taken).
    lower    the lower face below the nose, without the lips: where beards grow.
    skin     the segmenter's skin (bool), for colour references.
    eyes     around the eyes (lids, sockets): where the averages' eyes differ in position more
             than in age, so the sharp detail is damped there.
    """

    edit: np.ndarray
    hair: np.ndarray
    nonage: np.ndarray
    lower: np.ndarray
    skin: np.ndarray
    eyes: np.ndarray


def fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased filled polygons as a float32 mask."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(p * 16).astype(np.int32) for p in polygons], 1, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32)


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=sigma), 0.0, 1.0)


def unlike_skin(rgb: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how far a pixel's colour is from the face's skin (forehead skin
    that the hair mask reaches into must not grey)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    if skin.sum() < 20:
        return np.ones(rgb.shape[:2], np.float32)
    distance = np.sqrt(((lab - np.median(lab[skin], axis=0)) ** 2).sum(axis=2))
    return np.clip((distance - HAIR_UNLIKE_LAB[0]) / HAIR_UNLIKE_LAB[1], 0.0, 1.0).astype(np.float32)


def darker_than_skin(rgb: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much darker than the face's skin a pixel is (most hair is)."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    reference = float(np.median(luma[skin])) if skin.sum() >= 20 else float(np.median(luma))
    return np.clip((reference - luma - HAIR_DARKER[0]) / HAIR_DARKER[1], 0.0, 1.0).astype(np.float32)


def hair_hue(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 0 for clearly green or blue pixels, which hair (black, brown, blond,
    red, grey) never is."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    return (np.clip((a + HAIR_HUE) / HAIR_HUE, 0.0, 1.0) * np.clip((b + HAIR_HUE) / HAIR_HUE, 0.0, 1.0)).astype(
        np.float32
    )


def strand_detail(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32: local fine detail in grey levels (strands have some; blurred padding none)."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    scale = rgb.shape[0] / 256.0
    return cv2.GaussianBlur(np.abs(luma - cv2.GaussianBlur(luma, (0, 0), 1.5 * scale)), (0, 0), 4.0 * scale)


def hair_like(detail: np.ndarray, unlike: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much a pixel looks like hair rather than what tight crops pad
    the square with (a blurred mirror of the face, which the person segmenter calls hair too):
    hair differs in colour from the face's skin and has strand texture (``detail``, from
    ``strand_detail``); padding is smooth."""
    textured = np.clip((detail - HAIR_TEXTURE[0]) / HAIR_TEXTURE[1], 0.0, 1.0)
    return (unlike * textured).astype(np.float32)


class RegionFinder:
    """Computes ``Regions``; holds the person segmenter (loaded on first use)."""

    def __init__(self) -> None:
        self._segmenter: PersonSegmenter | None = None

    def semantic(self, image: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        if self._segmenter is None:
            self._segmenter = PersonSegmenter()
        person = self._segmenter.predict(image)
        masks = face_masks(image, landmarks, person)
        # the hairline refinement can call a patch of hair "scalp": take the geometric hair too,
        # so the greying is never patchy
        plain = face_masks(image, landmarks, person, refine=False)
        masks["hair"] = masks["hair"] | plain["hair"]
        return masks

    def find(
        self, image: np.ndarray, landmarks: np.ndarray, non_age: bool, hair: bool, head_scale: float = 1.0
    ) -> Regions:
        """``head_scale``: how much larger than an adult's the head is around the face oval (a
        child's cranium: ``shape.cranium_ratio``); the hair's reach grows with it."""
        s = image.shape[0]
        shape = (s, s)
        protect = fill(
            shape,
            region_polygons(landmarks, "left_eye")
            + region_polygons(landmarks, "right_eye")
            + region_polygons(landmarks, "lips")[1:],
        )  # eye openings and the inner mouth
        protect = feather(cv2.dilate(protect, np.ones((3, 3), np.uint8)), s / 128.0)
        hair_weight = np.zeros(shape, np.float32)
        nonage = np.zeros(shape, bool)
        skin = np.zeros(shape, bool)
        if non_age or hair:
            masks = self.semantic(image, landmarks)
            skin = masks["skin"]
            # grown a little: the segmenter's edge leaves a rim of coloured hair otherwise
            grown = cv2.dilate(masks["hair"].astype(np.uint8), np.ones((5, 5), np.uint8)) & ~masks["background"]
            unlike = unlike_skin(image, skin)
            detail = strand_detail(image)
            textured = hair_like(detail, unlike)
            darker = darker_than_skin(image, skin)
            hue = hair_hue(image)  # foliage and sky behind a head are not hair
            soft = feather(grown.astype(np.float32), s / 128.0)

            def weight(scale: float) -> np.ndarray:
                # only around the head: on tight crops the segmenter also calls blurred padding and
                # background "person", which would otherwise grey in blocks far from the head
                head = feather(fill(shape, [mesh.head_ring(landmarks, s, scale=HAIR_REACH * scale)]), s / 20.0)
                near = feather(fill(shape, [mesh.head_ring(landmarks, s, scale=HAIR_SURE * scale)]), s / 24.0)
                # near the face: hair unlike skin that is darker than it or textured (bright smooth
                # background at a thin hair edge is neither); further out only where it looks like hair
                likely = np.maximum(near * unlike * np.maximum(darker, textured), textured)
                return soft * head * likely * hue

            hair_weight = weight(1.0)
            if head_scale > 1.0:
                # a child's hair reaches further above the face: the larger reach keeps only hair
                # connected to the hair found at an adult's reach (a child at 75 got a grey band
                # along the hairline under dark hair; blurred padding above it stays out)
                wide = weight(head_scale)
                _, labels = cv2.connectedComponents((wide > HAIR_CONNECTED).astype(np.uint8))
                touching = np.unique(labels[(hair_weight > HAIR_CONNECTED) & (labels > 0)])
                # smooth dark hair has little detail, blurred padding less still (medians 1.1 and 0.7)
                faint = np.clip((detail - HAIR_FAINT[0]) / HAIR_FAINT[1], 0.0, 1.0)
                hair_weight = np.maximum(hair_weight, wide * np.isin(labels, touching) * faint)
            nonage = masks["hair"] | masks["background"]
        oval = fill(shape, region_polygons(landmarks, "face_oval"))
        if non_age:
            region = feather(cv2.erode(oval, np.ones((5, 5), np.uint8)), s / 64.0) * (1.0 - hair_weight)
        else:
            region = np.ones(shape, np.float32)
        lower = _lower_face(landmarks, oval, s)
        eye_lines = fill(shape, region_polygons(landmarks, "left_eye") + region_polygons(landmarks, "right_eye"))
        reach = max(int(s * EYE_REACH), 3) | 1
        eyes = feather(cv2.dilate(eye_lines, np.ones((reach, reach), np.uint8)), s / 40.0)
        return Regions((region * (1.0 - protect)).astype(np.float32), hair_weight, nonage, lower, skin, eyes)


def _lower_face(landmarks: np.ndarray, oval: np.ndarray, size: int) -> np.ndarray:
    """The oval below the nose's base, without the lips (where beard and moustache grow)."""
    lm = np.asarray(landmarks, np.float32)
    top = float(lm[[2, 98, 327], 1].mean())  # nose base and nostril wings
    rows = np.arange(size, dtype=np.float32)[:, None]
    below = np.clip((rows - top + size / 64.0) / (size / 32.0), 0.0, 1.0)
    lips = fill(oval.shape, region_polygons(lm, "lips")[:1])
    lips = cv2.dilate(lips, np.ones((3, 3), np.uint8))
    return feather(oval * below * (1.0 - lips), size / 128.0)
