"""faceage: show a face at another age, offline, with measured age and identity."""

from __future__ import annotations

from faceage.version import __version__

__all__ = ["__version__", "load"]


def load(method: str | None = None, device: str = "cpu", weights=None, **kwargs):
    """An ``Ager`` for aging method ``method`` (the registry's default when None):
    ``faceage.load().age(rgb, to=70)``.

    ``weights`` is a weights file to use instead of the shipped one. Keywords that
    ``faceage.methods.engine.Ager`` takes (``evaluate``, ``max_faces``, ``pipeline``, ...) go to it;
    the others are the method's options, as ``--set KEY=VALUE`` gives them (``strength=1.5``,
    ``hair="off"``). Imports the models only when called, so ``import faceage`` stays cheap.
    """
    import inspect

    from faceage.methods.engine import Ager
    from faceage.methods.registry import DEFAULT_METHOD, load_method

    engine_keys = set(inspect.signature(Ager).parameters) - {"method"}
    engine = {key: value for key, value in kwargs.items() if key in engine_keys}
    options = {key: value for key, value in kwargs.items() if key not in engine_keys}
    return Ager(load_method(method or DEFAULT_METHOD, device=device, weights=weights, **options), **engine)
