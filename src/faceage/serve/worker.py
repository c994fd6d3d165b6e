"""One model worker behind a bounded first-in-first-out queue.

The web server answers many connections at once, but the aging models are run by a single thread:
two photos never compete for the CPU (or the GPU) and never share a model's state. A request that
arrives while ``max_waiting`` others already wait is refused at once (``BusyError``, HTTP 503)
instead of waiting without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class BusyError(Exception):
    """The queue is full; the client should retry later."""


@dataclass(frozen=True)
class Ticket:
    """A submitted job: ``future`` gives its result; ``position`` is 1 when it was the only job
    (it started at once), 2 when one job was ahead of it, and so on."""

    future: Future
    position: int


class WorkQueue:
    """Run submitted callables one at a time, in arrival order, on one worker thread.

    Args:
        max_waiting: how many jobs may wait behind the running one before ``submit`` raises
            ``BusyError``.
    """

    def __init__(self, max_waiting: int = 32, name: str = "faceage-worker") -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1, got {max_waiting}")
        self.max_waiting = int(max_waiting)
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0  # submitted, not started
        self._running = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any]) -> Ticket:
        """Queue ``job``; raise ``BusyError`` when ``max_waiting`` jobs already wait."""
        with self._lock:
            if self._closed:
                raise BusyError("the server is shutting down")
            if self._waiting >= self.max_waiting:
                raise BusyError(f"{self._waiting} requests are already waiting")
            position = self._waiting + int(self._running) + 1
            self._waiting += 1
            future: Future = Future()
            self._jobs.put((job, future))
        return Ticket(future, position)

    def pending(self) -> int:
        """Jobs waiting or running now."""
        with self._lock:
            return self._waiting + int(self._running)

    def close(self, timeout: float | None = 10.0, cancel_waiting: bool = False) -> bool:
        """Refuse new jobs, stop the thread once the queued ones are done; with ``cancel_waiting``
        the jobs not yet started fail with ``BusyError`` instead (their requests get an answer at
        once) and only the running one is finished. Returns whether the thread ended within
        ``timeout`` (a process must not exit while it is inside a model: torch aborts)."""
        with self._lock:
            self._closed = True
        if cancel_waiting:
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    continue
                with self._lock:
                    self._waiting -= 1
                item[1].set_exception(BusyError("the server is shutting down"))
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            with self._lock:
                self._waiting -= 1
                self._running = True
            error: BaseException | None = None
            try:
                result = job()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                error = exc
            with self._lock:  # before the result is handed over: the next submit must not count this job
                self._running = False
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
