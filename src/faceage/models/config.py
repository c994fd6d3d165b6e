"""What every network config shares: a JSON round trip that refuses unknown keys."""

from __future__ import annotations

from dataclasses import Field, asdict, fields
from typing import Any, ClassVar, Self


class JsonConfig:
    """Mixin for frozen config dataclasses saved beside weights (``faceage.models.io``).

    ``to_dict`` gives JSON-ready fields (tuples as lists); ``from_dict`` rebuilds the config and
    names any key this version does not know, rather than silently dropping it. Configs that hold
    tuples convert lists back in their ``__post_init__`` so that a round trip compares equal.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on every subclass

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**d)
