"""The shape-normalised frame of the prototypes: every face warped onto the global mean shape.

Averaging faces only makes sense once their features line up, so colour, lighting and texture
statistics are taken in this frame (Burt & Perrett's "shape-free" faces), and the prototype
method reads a face in it the same way. One ``MeanFrame`` serves a lattice size; the barycentric
coordinates of its pixels in the mean mesh are computed once.

Also here: the features of the small gender/ethnicity classifier that picks which cells to use,
so the builder that trains it and the method that runs it compute the same thing.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceage.faces import mesh
from faceage.faces.texture import band_energy, decompose

COLOUR_GRID = 128  # mean colour, in the mean frame (fine enough for folds and eye bags)
ENERGY_GRID = 64  # band energies: smooth maps
LIGHT_GRID = 32  # lighting basis and classifier features
DETAIL_GRID = 256  # signed sharp detail: full resolution of a 256 px face
DETAIL_SIGMA = 8.0  # px of a 256 px face: detail is what a Gaussian of this width removes
FEATURE_POINTS = mesh.MESH_POINTS


def to_ycrcb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> float32 YCrCb 0..255 (OpenCV's BT.601 full-range)."""
    return cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)


def chroma_amount(ycc: np.ndarray) -> np.ndarray:
    """How coloured each pixel of a YCrCb 0..255 image is: |Cr - 128| + |Cb - 128| (0: gray)."""
    return np.abs(ycc[..., 1] - 128.0) + np.abs(ycc[..., 2] - 128.0)


# OpenCV's YCrCb -> RGB: R = Y + 1.403 Cr', G = Y - 0.714 Cr' - 0.344 Cb', B = Y + 1.773 Cb' (' = - 128)
_CHROMA_TO_RGB = np.array([[1.403, 0.0], [-0.714, -0.344], [0.0, 1.773]], np.float32)
_GAMUT_SLACK = 2.0  # levels: rounded Cr/Cb put in-gamut colours this far out; plain clipping does there


def from_ycrcb(ycc: np.ndarray) -> np.ndarray:
    """float YCrCb 0..255 -> (H, W, 3) uint8 RGB. Luma is first clipped to the range in which the
    pixel's colour fits in RGB: clipping R, G, B one by one would shift the hue of every pixel that
    a strong brightening or darkening pushes out of gamut, which reads as colour speckle."""
    ycc = np.asarray(ycc, np.float32)
    offsets = (ycc[..., 1:] - 128.0) @ _CHROMA_TO_RGB.T  # (H, W, 3): each channel's offset from Y
    low = -offsets.min(axis=-1) - _GAMUT_SLACK
    high = np.maximum(255.0 - offsets.max(axis=-1) + _GAMUT_SLACK, low)
    fitted = ycc.copy()
    fitted[..., 0] = np.clip(ycc[..., 0], low, high)
    return cv2.cvtColor(np.clip(np.round(fitted), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


class MeanFrame:
    """Warp faces onto the mean shape on a ``grid`` x ``grid`` lattice over a ``size`` face."""

    def __init__(self, mean_shape: np.ndarray, triangles: np.ndarray, size: int, grid: int) -> None:
        self.size, self.grid = int(size), int(grid)
        self.control = mesh.control_points(mean_shape, self.size)
        self.triangles = np.asarray(triangles, np.int64)
        self.bary = mesh.Barycentric(self.control, self.grid, self.size, self.triangles)
        self._areas = mesh.signed_areas(self.control, self.triangles)

    def positions(self, landmarks: np.ndarray) -> np.ndarray:
        """(grid, grid, 2): where each mean-frame pixel lies in the face with ``landmarks``."""
        return self.bary.interpolate(mesh.control_points(landmarks, self.size))

    def sample(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """A face image (size, size[, C]) float32 -> (grid, grid, C) in the mean frame, low-passed
        first so the coarser lattice does not alias."""
        img: np.ndarray = np.asarray(image, np.float32)
        factor = self.size / self.grid
        if factor > 1.5:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=0.5 * factor)
        pos = self.positions(landmarks)
        out = mesh.remap(img, pos)
        return out if out.ndim == 3 else out[:, :, None]

    def fold_fraction(self, landmarks: np.ndarray) -> float:
        """Share of the mean mesh's area whose triangles are flipped in this face's mesh.

        A few thin triangles at the cheek's profile flip with ordinary head turns (median 0.1 %
        of the area on our data, 99th percentile 3 %); much more means a poor landmark fit."""
        areas = mesh.signed_areas(mesh.control_points(landmarks, self.size), self.triangles)
        flipped = np.sign(areas) != np.sign(self._areas)
        return float(np.abs(self._areas[flipped]).sum() / np.abs(self._areas).sum())


def fine_part(luma: np.ndarray, size: int = 256) -> np.ndarray:
    """The signed detail of a luminance image: itself minus its Gaussian blur (``DETAIL_SIGMA``
    scaled to ``size``)."""
    luma = np.asarray(luma, np.float32)
    return luma - cv2.GaussianBlur(luma, (0, 0), sigmaX=DETAIL_SIGMA * size / 256.0)


def oval_region(mean_shape: np.ndarray, size: int, grid: int) -> np.ndarray:
    """(grid, grid) float32 in [0, 1]: the mean face oval, feathered, on the lattice."""
    from faceage.faces.landmarks import region_polygons

    scale = grid / size
    poly = region_polygons(mean_shape, "face_oval")[0]
    pts = ((poly + 0.5) * scale - 0.5) * 16
    mask: np.ndarray = np.zeros((grid, grid), np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigmaX=grid / 64.0), 0.0, 1.0)


def face_statistics(
    rgb: np.ndarray, landmarks: np.ndarray, colour_frame: MeanFrame, energy_frame: MeanFrame, light_frame: MeanFrame
) -> dict[str, np.ndarray]:
    """What one face contributes to its cell: mean-frame YCrCb at both lattices and band energies."""
    ycc = to_ycrcb(rgb)
    bands, _ = decompose(ycc[..., 0])
    energy = band_energy(bands)  # (K, S, S)
    energy_mean = energy_frame.sample(np.moveaxis(energy, 0, -1), landmarks)  # (e, e, K)
    return {
        "colour": colour_frame.sample(ycc, landmarks),
        "light": light_frame.sample(ycc, landmarks),
        "energy": np.moveaxis(energy_mean, -1, 0),
    }


def classifier_features(light_ycc: np.ndarray, landmarks: np.ndarray, mean_shape: np.ndarray, size: int) -> np.ndarray:
    """1-D float32 features for the gender/ethnicity classifier: the shape-normalised face at the
    light lattice (contrast-normalised luma, raw chroma) and the landmarks' offsets from the mean."""
    luma = light_ycc[..., 0]
    luma = (luma - luma.mean()) / (luma.std() + 1e-3)
    chroma = (light_ycc[..., 1:] - 128.0) / 16.0
    shape = (np.asarray(landmarks, np.float32)[:FEATURE_POINTS] - mean_shape[:FEATURE_POINTS]) / (size / 32.0)
    return np.concatenate([luma.ravel(), chroma.ravel(), shape.ravel()]).astype(np.float32)
