"""faceage: show a face at another age, offline, with measured age and identity."""

from __future__ import annotations

from faceage.version import __version__

__all__ = ["__version__", "load"]


def load(method: str | None = None, device: str = "cpu", weights=None, **kwargs):
    """An ``Ager`` for aging method ``method`` (the registry's default when None):
    ``faceage.load().age(rgb, to=70)``.

    ``weights`` is a weights file to use instead of the shipped one; ``kwargs`` go to
    ``faceage.methods.engine.Ager`` (``evaluate``, ``max_faces``, ``pipeline``, ...).
    Imports the models only when called, so ``import faceage`` stays cheap.
    """
    from faceage.methods.engine import Ager
    from faceage.methods.registry import DEFAULT_METHOD, load_method

    return Ager(load_method(method or DEFAULT_METHOD, device=device, weights=weights), **kwargs)
