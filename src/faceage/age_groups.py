"""Age groupings shared by the conditional method (IPCGAN), its losses and the benchmark.

A grouping is a list of ascending lower edges: group 0 is every age below ``edges[0]``, group i
holds ``edges[i-1] <= age < edges[i]``, the last group is open-ended. ``centre`` is the age a
group stands for when a user asks for a group by age (``--to 70``) or a result is compared with it.

- ``ipcgan5``: the IPCGAN paper's five groups (<= 20, 21-30, 31-40, 41-50, 51+), trained on CACD adults.
- ``lifespan``: decades from childhood to old age (0-9, 10-19, ..., 60-69, 70+), so the
  conditional method covers the same target groups as the benchmark (0, 10, 20, 30, 50) and the
  elderly, which is what faceage is for.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

# The oldest target accepted at all; ages between a method's own range and this are clamped.
MAX_TARGET_AGE = 120.0


def check_target_age(age: object, what: str = "target age") -> float:
    """``age`` as float years, or ``ValueError`` naming ``what`` and the value: the one check of a
    target age, for the command line, the web app, the engine and the methods."""
    if isinstance(age, bool) or not isinstance(age, numbers.Real):
        raise ValueError(f"{what} must be a number of years, got {age!r}")
    value = float(age)
    shown = f"{value:g}" if isinstance(age, float) else repr(age)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of years, got {shown}")
    if not 0.0 <= value <= MAX_TARGET_AGE:
        raise ValueError(f"{what} must be between 0 and {MAX_TARGET_AGE:g} years, got {shown}")
    return value


def plain_age(age: float) -> float:
    """``age`` to one decimal, the precision of every age faceage names or records: -0 and 1e-320
    become 0, 42.54 becomes 42.5, so a file name or a metadata field never reads ``-0`` or ``9.9e-321``."""
    return round(float(age), 1) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True)
class AgeGrouping:
    name: str
    edges: tuple[float, ...]  # lower bounds of groups 1..G-1
    centres: tuple[float, ...]  # one representative age per group

    def __post_init__(self) -> None:
        if len(self.centres) != len(self.edges) + 1:
            raise ValueError(f"grouping {self.name}: {len(self.edges)} edges need {len(self.edges) + 1} centres")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"grouping {self.name}: edges must ascend, got {self.edges}")

    @property
    def num_groups(self) -> int:
        return len(self.centres)

    def labels(self) -> list[str]:
        """Readable group names such as '0-9', '10-19', '70+'."""
        lows = [0, *self.edges]
        out = [f"{int(lo)}-{int(hi) - 1}" for lo, hi in zip(lows, self.edges)]
        return out + [f"{int(self.edges[-1])}+"]

    def group_of(self, ages: float | np.ndarray) -> np.ndarray:
        """Ages in years -> group indices (int64), elementwise."""
        if not np.all(np.isfinite(ages)):
            raise ValueError(f"ages must be finite numbers, got {ages}")
        return np.searchsorted(np.asarray(self.edges, np.float64), np.asarray(ages, np.float64), side="right").astype(
            np.int64
        )


GROUPINGS: dict[str, AgeGrouping] = {
    "ipcgan5": AgeGrouping("ipcgan5", (21, 31, 41, 51), (16, 25, 35, 45, 60)),
    "lifespan": AgeGrouping("lifespan", (10, 20, 30, 40, 50, 60, 70), (5, 15, 25, 35, 45, 55, 65, 78)),
}


def get_grouping(name: str) -> AgeGrouping:
    try:
        return GROUPINGS[name]
    except KeyError:
        raise ValueError(f"unknown age grouping {name!r}; choose from {sorted(GROUPINGS)}") from None
