"""Silence the start-up chatter that MediaPipe and LiteRT print from C++ straight to fd 2.

Their INFO/WARNING lines ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires
...") ignore the Python logging module and every GLOG/TF environment variable, and would bury the
CLI's own one-line messages. Python exceptions are unaffected: they are raised, not printed, and
the original stderr is restored before anyone reports them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (process-wide: keep the block short)."""
    if os.environ.get("FACEAGE_NATIVE_LOGS") == "1":  # opt back in when debugging a native model
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some test runners)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
