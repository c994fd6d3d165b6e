"""faceage: show a face at another age, offline, with measured age and identity."""

from __future__ import annotations

__version__ = "0.1.0"


def load(method: str | None = None, device: str = "cpu", weights=None, **kwargs):
    """An ``Ager`` for aging method ``method``: ``faceage.load("ipcgan").age(rgb, to=70)``.

    ``method`` None means the default method; while every method is experimental there is none,
    and leaving it out raises ``FaceageError``.

    ``weights`` is a weights file to use instead of the shipped one; ``kwargs`` go to
    ``faceage.methods.engine.Ager`` (``evaluate``, ``max_faces``, ``pipeline``, ...).
    Imports the models only when called, so ``import faceage`` stays cheap.
    """
    from faceage.methods.engine import Ager
    from faceage.methods.registry import load_method, resolve_method

    return Ager(load_method(resolve_method(method), device=device, weights=weights), **kwargs)
