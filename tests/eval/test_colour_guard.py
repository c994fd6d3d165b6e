"""faceage.eval.colour: the guards against invented colour detail and coloured grayscale outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage.eval.colour import channel_spread, face_ellipse, highfreq_colour_ratio


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (8, 8, 3)).astype(np.uint8)
    return cv2.resize(small, (128, 128), interpolation=cv2.INTER_CUBIC)


def test_ratio_is_one_for_the_same_face_and_large_for_colour_noise():
    face = _face()
    assert highfreq_colour_ratio(face, face)[0] == pytest.approx(1.0)
    noise = np.random.default_rng(1).normal(0, 6, face.shape)
    noisy = np.clip(face + noise, 0, 255).astype(np.uint8)
    gray_noise = np.clip(face + noise[..., :1], 0, 255).astype(np.uint8)  # luma-only noise
    assert highfreq_colour_ratio(noisy, face)[0] > 5
    assert highfreq_colour_ratio(gray_noise, face)[0] < 1.5


def test_channel_spread_and_mask():
    face = _face(2)
    gray = np.repeat(face.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    assert channel_spread(gray)[0] == 0 and channel_spread(face)[0] > 10
    mask = face_ellipse(128)
    assert mask[64, 64] and not mask[0, 0] and 0.25 < mask.mean() < 0.45
    with pytest.raises(ValueError, match="uint8"):
        channel_spread(face.astype(np.float32))
