"""The models behind the web app: one ``Ager`` per served method (and per set of method options a
page asked for), sharing the face models.

Everything is loaded when the server starts, so a missing weights file is reported on the command
line, not in the page, and the first request is as fast as the others. ``render`` is called by the
single worker thread only (``faceage.serve.worker``), so the models need no locking.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from faceage.errors import FaceageError
from faceage.serve.app import MethodChoice, ProgressFn, Rendering, RenderRequest

log = logging.getLogger(__name__)

_OPTION_SETS = 4  # agers kept for option sets other than the server's own (oldest dropped first)


class EngineBackend:
    """Serve ``method`` (from ``weights``, or its shipped files) and every other installed method.

    Args:
        method: the default method; it must load, or the server does not start.
        device: torch device for the methods.
        weights: a weights file for ``method`` instead of its shipped one.
        max_faces: age at most this many faces per photo (largest first), bounding a request's time.
        others: also serve the other registered methods whose shipped weights are installed.
        options: ``method``'s options (``--set``), the defaults of every request to it.
    """

    def __init__(
        self,
        method: str,
        device: str = "cpu",
        weights: str | Path | None = None,
        max_faces: int | None = 8,
        others: bool = True,
        options: Mapping[str, str] | None = None,
    ) -> None:
        from faceage.methods.engine import Ager
        from faceage.methods.registry import METHODS, available_methods, load_method

        names = [method] + ([n for n in available_methods() if n != method] if others else [])
        self.agers: dict[str, Ager] = {}
        self._summaries: dict[str, str] = {}
        self._weights = {method: weights}
        self._defaults = {method: dict(options or {})}
        self._device, self._max_faces = device, max_faces
        self._variants: OrderedDict[tuple, Ager] = OrderedDict()
        shared: dict = {}
        pipelines: dict = {}
        for name in names:
            try:
                aging = load_method(
                    name, device=device, weights=self._weights.get(name), **self._defaults.get(name, {})
                )
            except FaceageError as error:
                if name == method:
                    raise
                log.warning("not serving method %s: %s", name, error)
                continue
            ager = Ager(aging, pipeline=pipelines.get(aging.face_size), max_faces=max_faces, **shared)
            shared = {"estimator": ager.estimator, "verifier": ager.verifier}
            pipelines[aging.face_size] = ager.pipeline
            self.agers[name] = ager
            self._summaries[name] = METHODS[name].label()

    def methods(self) -> list[MethodChoice]:
        from faceage.methods.registry import METHODS

        out = []
        for name, ager in self.agers.items():
            lo, hi = ager.method.supported_ages()
            defaults = self._defaults.get(name, {})
            options = tuple(
                {**option.to_dict(), "default": option.convert(defaults.get(option.name, option.default))}
                for option in METHODS[name].options
            )
            out.append(MethodChoice(name, self._summaries[name], float(lo), float(hi), options))
        return out

    def describe(self) -> dict[str, dict]:
        """Each served method's ``describe()`` (weights, sha256...), for logs and benchmarks."""
        return {name: ager.method.describe() for name, ager in self.agers.items()}

    def _ager(self, method: str, options: Mapping[str, str]):
        """The ager for ``method`` with ``options`` over the server's own (built once, then kept)."""
        from faceage.methods.engine import Ager
        from faceage.methods.registry import load_method

        base = self.agers[method]
        merged = {**self._defaults.get(method, {}), **options}
        if merged == self._defaults.get(method, {}):
            return base
        key = (method, tuple(sorted(merged.items())))
        if key not in self._variants:
            aging = load_method(method, device=self._device, weights=self._weights.get(method), **merged)
            self._variants[key] = Ager(
                aging, base.pipeline, base.estimator, base.verifier, base.evaluate, self._max_faces
            )
            while len(self._variants) > _OPTION_SETS:
                self._variants.popitem(last=False)
        self._variants.move_to_end(key)
        return self._variants[key]

    def render(self, rgb: np.ndarray, request: RenderRequest, progress: ProgressFn | None = None) -> Rendering:
        from faceage.outputs.progression import progression_strip
        from faceage.outputs.results import age_label, progression_frames, result_provenance

        ager = self._ager(request.method, request.options)
        info = ager.method.describe()
        ages = [request.target, *request.strip, *request.progression]
        main = None
        rest = []
        # one result at a time: past the first, only the face crops are kept (a 12 MP photo at
        # 23 ages would hold 830 MB of whole photos)
        # only the photo at the target is shown with its numbers: the strip and progression are pictures
        for result in ager.age_each(rgb, ages, request.source_age, progress, evaluate_first=1):
            if main is None:
                main = result
            else:
                rest.append(dataclasses.replace(result, image=result.image[:0, :0]))
        assert main is not None  # age_each yields one result per age, and there is at least one
        rendering = Rendering(image=main.image, metadata=result_provenance(info, [main]), report=main.to_dict())
        strip_results, progression_results = rest[: len(request.strip)], rest[len(request.strip) :]
        if strip_results:
            # the largest face at each age, as the re-aligned crop cut from each aged photo
            frames, labels = progression_frames(strip_results, face=0, with_source=False)
            rendering = dataclasses.replace(
                rendering,
                strip=progression_strip(frames, labels),
                strip_metadata=result_provenance(info, strip_results, 0),
            )
        if progression_results:
            frames, labels = progression_frames(progression_results, face=0)
            metadata = result_provenance(info, progression_results, 0)
            rendering = dataclasses.replace(
                rendering,
                frames=np.concatenate(frames, axis=1),
                frame_ages=tuple(r.target_age for r in progression_results),
                frames_metadata=metadata,
                gif_labels=tuple(labels),
            )
            if not strip_results:  # the progression's labelled strip is the one to download
                rendering = dataclasses.replace(
                    rendering, strip=progression_strip(frames, labels), strip_metadata=metadata
                )
        log.debug("rendered %s at %s", request.method, ", ".join(age_label(a) for a in ages))
        return rendering
