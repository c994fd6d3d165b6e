"""The single model worker: arrival order, queue positions, bounded waiting, errors handed back."""

from __future__ import annotations

import threading

import pytest

from faceage.serve.worker import BusyError, WorkQueue


def test_jobs_run_one_at_a_time_in_arrival_order():
    queue = WorkQueue(max_waiting=10)
    gate = threading.Event()
    order, running, overlap = [], [], []

    def job(i):
        def run():
            if running:
                overlap.append(i)
            running.append(i)
            gate.wait(5)
            order.append(i)
            running.remove(i)
            return i * 10

        return run

    tickets = [queue.submit(job(i)) for i in range(5)]
    gate.set()
    assert [t.future.result(timeout=5) for t in tickets] == [0, 10, 20, 30, 40]
    assert order == [0, 1, 2, 3, 4]
    assert overlap == []
    assert [t.position for t in tickets] == [1, 2, 3, 4, 5]
    queue.close()


def test_full_queue_refuses_at_once_and_recovers():
    queue = WorkQueue(max_waiting=2)
    started, gate = threading.Event(), threading.Event()

    def blocker():
        started.set()
        gate.wait(5)

    first = queue.submit(blocker)
    assert started.wait(5)  # running, no longer waiting
    waiting = [queue.submit(lambda: "ok"), queue.submit(lambda: "ok")]
    assert [t.position for t in waiting] == [2, 3]
    with pytest.raises(BusyError):
        queue.submit(lambda: "refused")
    assert queue.pending() == 3
    gate.set()
    first.future.result(timeout=5)
    assert [t.future.result(timeout=5) for t in waiting] == ["ok", "ok"]
    assert queue.submit(lambda: "again").future.result(timeout=5) == "again"
    queue.close()


def test_a_failing_job_hands_its_error_back_and_the_worker_goes_on():
    queue = WorkQueue(max_waiting=4)

    def fail():
        raise ValueError("bad photo")

    failing = queue.submit(fail)
    with pytest.raises(ValueError, match="bad photo"):
        failing.future.result(timeout=5)
    assert queue.submit(lambda: 1).future.result(timeout=5) == 1
    queue.close()


def test_closed_queue_refuses_new_jobs():
    queue = WorkQueue(max_waiting=1)
    queue.close()
    with pytest.raises(BusyError, match="shutting down"):
        queue.submit(lambda: None)


def test_max_waiting_must_be_positive():
    with pytest.raises(ValueError, match="max_waiting"):
        WorkQueue(max_waiting=0)
