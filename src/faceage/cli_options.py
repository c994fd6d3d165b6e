"""Small click helpers shared by the command modules (list options, context settings)."""

from __future__ import annotations

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


def int_list(text: str) -> tuple[int, ...]:
    """'32,64,128' -> (32, 64, 128); a bad entry is a click usage error."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    """'0.25,0.5' -> (0.25, 0.5); a bad entry is a click usage error."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
