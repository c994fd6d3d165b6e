"""Run the ``faceage`` entry point in-process, as a user would from a shell (importable from every
test folder: pytest puts tests/ on sys.path for its conftest.py)."""

from __future__ import annotations

from faceage.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``faceage ARGS...`` through ``faceage.cli.main``: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
