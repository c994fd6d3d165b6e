"""Person segmentation: a soft mask of the person (head, hair, body) against the background.

The model is MediaPipe's general selfie segmentation (256x256, Apache-2.0), vendored in
``faceage/weights``. The MediaPipe Tasks API refuses it (the file has no metadata), so it runs on
the plain TFLite interpreter from ``ai-edge-litert``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from faceage._native import quiet_native_stderr
from faceage.assets import model_path
from faceage.errors import ModelFileError
from faceage.imageio import check_rgb

# The network's fixed input side; inputs are RGB scaled to [0, 1].
MODEL_SIZE = 256


class PersonSegmenter:
    """Soft person mask for RGB images, on the CPU.

    The interpreter is created on the first call (not at construction), once per instance.
    One instance may be shared between threads: calls are serialised by a lock, because a TFLite
    interpreter holds its input and output tensors in place.

    Args:
        num_threads: CPU threads the interpreter may use (>= 1).
        path: model file; defaults to the vendored ``selfie_segmentation.tflite``.
    """

    def __init__(self, num_threads: int = 1, path: str | Path | None = None) -> None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = int(num_threads)
        self.path = Path(path) if path is not None else model_path("selfie_segmentation")
        self._interpreter = None
        self._lock = threading.Lock()

    def _load(self):  # -> ai_edge_litert Interpreter, imported here so importing us stays cheap
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        if tuple(inp["shape"]) != (1, MODEL_SIZE, MODEL_SIZE, 3):
            raise ModelFileError(
                f"{self.path}: expected a (1, {MODEL_SIZE}, {MODEL_SIZE}, 3) input, got {tuple(inp['shape'])}"
            )
        self._input_index = inp["index"]
        self._output_index = out["index"]
        return interpreter

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Return the person probability per pixel.

        Args:
            rgb: (H, W, 3) uint8 RGB image, or a batch (B, H, W, 3).

        Returns:
            float32 (H, W) (or (B, H, W)) in [0, 1]; 1 = person. The image is stretched to
            256x256 and the mask resized back bilinearly. Aligned faces are square; on
            non-square crops of one photo, stretching and letterboxing each won half the cases.
        """
        if isinstance(rgb, np.ndarray) and rgb.ndim == 4:
            out = np.empty(rgb.shape[:3], dtype=np.float32)
            for i, image in enumerate(rgb):
                out[i] = self.predict(image)
            return out
        rgb = check_rgb(rgb)
        height, width = rgb.shape[:2]
        # INTER_AREA averages when shrinking (no aliasing); it is poor for enlarging.
        shrink = height * width >= MODEL_SIZE * MODEL_SIZE
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        small = cv2.resize(rgb, (MODEL_SIZE, MODEL_SIZE), interpolation=interpolation)
        tensor = (small.astype(np.float32) * (1.0 / 255.0))[None]
        with self._lock:
            interpreter = self._interpreter
            if interpreter is None:
                with quiet_native_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
                    interpreter = self._interpreter = self._load()
                    interpreter.set_tensor(self._input_index, tensor)
                    interpreter.invoke()
            else:
                interpreter.set_tensor(self._input_index, tensor)
                interpreter.invoke()
            mask = interpreter.get_tensor(self._output_index)[0, :, :, 0].copy()
        if (height, width) != (MODEL_SIZE, MODEL_SIZE):
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(mask, 0.0, 1.0, out=mask)
