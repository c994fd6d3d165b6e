"""The compiled packages faceage runs on, and what to tell a user when one cannot be imported.

A broken or partial install shows up as an ``ImportError`` deep inside some command; the CLI turns
it into one line that names the package and how to reinstall it, like a missing model file.
"""

from __future__ import annotations

from faceage.version import __version__

# import name -> distribution that provides it (pinned in requirements.txt)
RUNTIME_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "numpy": "numpy",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "onnxruntime": "onnxruntime",
    "dlib": "dlib-bin",
    "safetensors": "safetensors",
    "tqdm": "tqdm",
    "ai_edge_litert": "ai-edge-litert",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
}


def missing_runtime_message(error: ImportError) -> str | None:
    """One line for an import failure of a package faceage depends on; None for any other."""
    name = (error.name or "").split(".")[0]
    if name not in RUNTIME_PACKAGES:
        return None
    distribution = RUNTIME_PACKAGES[name]
    return (
        f"the runtime package '{name}' ({distribution}) is missing or broken: {error}; "
        f"reinstall faceage {__version__} with its dependencies "
        "(pip install --force-reinstall WHEEL_OR_FOLDER; `make install` in a checkout)"
    )
