"""The models behind the web app: one ``Ager`` per served method, sharing the face models.

Everything is loaded when the server starts, so a missing weights file is reported on the command
line, not in the page, and the first request is as fast as the others. ``render`` is called by the
single worker thread only (``faceage.serve.worker``), so the models need no locking.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceage.errors import FaceageError
from faceage.serve.app import MethodChoice, Rendering

log = logging.getLogger(__name__)


class EngineBackend:
    """Serve ``method`` (from ``weights``, or its shipped files) and every other installed method.

    Args:
        method: the default method; it must load, or the server does not start.
        device: torch device for the methods.
        weights: a weights file for ``method`` instead of its shipped one.
        max_faces: age at most this many faces per photo (largest first), bounding a request's time.
        others: also serve the other registered methods whose shipped weights are installed.
    """

    def __init__(
        self,
        method: str,
        device: str = "cpu",
        weights: str | Path | None = None,
        max_faces: int | None = 8,
        others: bool = True,
    ) -> None:
        from faceage.methods.engine import Ager
        from faceage.methods.registry import METHODS, available_methods, load_method

        names = [method] + ([n for n in available_methods() if n != method] if others else [])
        self.agers: dict[str, Ager] = {}
        self._summaries: dict[str, str] = {}
        shared: dict = {}
        pipelines: dict = {}
        for name in names:
            try:
                aging = load_method(name, device=device, weights=weights if name == method else None)
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
        out = []
        for name, ager in self.agers.items():
            lo, hi = ager.method.supported_ages()
            out.append(MethodChoice(name, self._summaries[name], float(lo), float(hi)))
        return out

    def describe(self) -> dict[str, dict]:
        """Each served method's ``describe()`` (weights, sha256...), for logs and benchmarks."""
        return {name: ager.method.describe() for name, ager in self.agers.items()}

    def render(self, rgb: np.ndarray, method: str, target_age: float, strip_ages: Sequence[float]) -> Rendering:
        from faceage.outputs.results import progression_strip_of, result_provenance

        ager = self.agers[method]
        ages = [float(target_age), *[float(a) for a in strip_ages]]
        results = ager.age(rgb, to=ages)  # faces found, aligned and measured once for all ages
        assert isinstance(results, list)  # a list of ages gives a list of results
        main = results[0]
        info = ager.method.describe()
        rendering = Rendering(image=main.image, metadata=result_provenance(info, results[:1]), report=main.to_dict())
        if strip_ages:
            # the largest face at each age, as the re-aligned crop cut from each aged photo
            strip, strip_metadata = progression_strip_of(info, results[1:], face=0, with_source=False)
            rendering = Rendering(
                image=rendering.image,
                metadata=rendering.metadata,
                report=rendering.report,
                strip=strip,
                strip_metadata=strip_metadata,
            )
        return rendering
