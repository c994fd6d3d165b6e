"""faceage: show a face at another age, offline, with measured age and identity."""

from __future__ import annotations

__version__ = "0.1.0"
