"""The Ray engine of ``faceage age --engine ray``: one Ray Data pipeline that maps a function over
small rows on an actor pool of a Ray cluster, and hands each value back to the driver as it is done.

It knows nothing of faces. The caller gives rows (a photo's path and where its outputs go: never
pixels, so the list of a million photos stays small) and ``setup``, a picklable callable that each
actor runs once (loading the aging method once per actor) and that returns the function applied to
each row there. Reading, decoding, aging and writing all happen inside that function, one row at a
time per actor, so at most one decoded photo per actor is in memory: Ray Data's streaming executor
sends an actor its next row only when it has room (backpressure), and the rows waiting are paths.
Values come back in completion order with the row's index; the driver keeps the batch record and
the summary (one writer), so a killed worker's row is retried by Ray on a restarted actor and
reported once.

Outputs are written by the workers, so the output folder must be one every node can reach (a shared
filesystem): before the pipeline starts, a probe task on every node with CPUs writes and removes a
hidden file there, and a node that cannot is reported in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faceage.errors import FaceageError

INSTALL_HINT = "pip install 'faceage[ray]'"
# rows per Ray Data block: one row a block keeps a retried block (after a worker died) to one photo,
# up to this many blocks; longer lists share blocks so planning stays light
MAX_BLOCKS = 5000
# object store of a Ray this engine starts itself: rows and results are small
LOCAL_OBJECT_STORE = 256 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0


class RayEngineError(FaceageError):
    """Ray is missing, the cluster cannot be reached, or a node cannot write the outputs."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipeline needs Ray Data, an extra of ray)
    except ImportError:
        raise RayEngineError(
            f"--engine ray needs Ray (with Ray Data), which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def check_reachable(address: str) -> None:
    """Fail in one line when nothing listens at ``address`` (``ray.init`` would keep retrying first)."""
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayEngineError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise RayEngineError(
            f"no Ray cluster at {address} ({reason}): start one with `ray start --head`, or leave out --address"
        ) from None


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a Ray on this machine.
    Returns whether this call connected (and so should shut down); a caller already inside a Ray
    driver keeps its own connection."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray Data's actor pool passes constructor arguments through the object store, and the driver's
    # core worker logs a line about that at ERROR for every actor; real failures still reach us as
    # exceptions (a user's own RAY_BACKEND_LOG_LEVEL wins)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    # one line per problem is ours to print: Ray's own notes (token auth, execution plans) stay in its logs
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        with _stderr_silenced():
            ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **quiet)
        return True
    check_reachable(address)
    try:
        with _stderr_silenced():
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = _first_line(error)
        if "InvalidAuthToken" in _chain_text(error):
            reason = (
                "the cluster wants its authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(or put the token in ~/.ray/auth_token)"
            )
        raise RayEngineError(f"cannot join the Ray cluster at {address}: {reason}") from None
    return True


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Standard error at file-descriptor level goes nowhere: Ray's C++ core notes its log level as it
    starts. A failure still reaches the caller as an exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _probe(folder: str) -> str | None:
    """On one node: None when ``folder`` can be created and written there, else the reason."""
    try:
        os.makedirs(folder, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".faceage-probe-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_writable(ray: Any, folder: Path) -> None:
    """Every node that can run an actor writes and removes a hidden file in ``folder``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            str(folder)
        )
        for node in nodes
    ]
    for node, problem in zip(nodes, ray.get(refs, timeout=120)):
        if problem is not None:
            raise RayEngineError(
                f"Ray node {node['NodeManagerAddress']} cannot write the output folder {folder} ({problem}): "
                "-o must be a folder every node can reach and write (a shared filesystem)"
            )


def _actor_class(setup: Callable[[], Callable[[dict], Any]]) -> type:
    """The class of the actor pool's members: each runs ``setup`` once, then the function it returned
    per row. ``setup`` travels inside the class, not as a constructor argument (Ray warns that an
    argument in the object store could be lost before an actor restarts)."""

    class Aging:
        def __init__(self) -> None:
            self.one = setup()

        def __call__(self, batch: dict) -> dict:
            import numpy as np

            count = len(batch["index"])
            values = [pickle.dumps(self.one({key: batch[key][i] for key in batch})) for i in range(count)]
            return {"index": batch["index"], "value": np.array(values, dtype=object)}

    return Aging


def ray_map(
    rows: list[dict],
    setup: Callable[[], Callable[[dict], Any]],
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus: float = 1,
    memory: int | None = None,
    writable: Path | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, value)`` for each of ``rows``, in completion order, where ``value`` is
    ``setup()(row)`` computed on one of ``workers`` actors (default: as many as the cluster's CPUs
    allow at ``cpus`` each), each reserving ``cpus`` CPUs and ``memory`` bytes. Closing the generator
    stops the pipeline, and the Ray this call started.

    Joining the cluster and the output-folder probe happen in this call, before the first value, so
    a missing Ray, an unreachable address or an unwritable folder raises ``RayEngineError`` here."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        # a Ray started for this run alone listens on the loopback address only, not the network
        # (read by Ray as it is imported: on Linux its nodes otherwise take the outward address)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    owned = connect(ray, address)
    try:
        if writable is not None:
            check_writable(ray, writable)
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    except BaseException:
        if owned:
            ray.shutdown()
        raise
    return _values(ray, owned, rows, setup, workers, cpus, memory)


def _values(ray: Any, owned: bool, *args: Any) -> Iterator[tuple[int, Any]]:
    try:
        yield from _pipeline(ray, *args)
    finally:
        if owned:
            ray.shutdown()


def _pipeline(
    ray: Any, rows: list[dict], setup: Callable, workers: int, cpus: float, memory: int | None
) -> Iterator[tuple[int, Any]]:
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own bar, with faces/s
    context.execution_options.preserve_order = False  # hand each photo back as soon as it is done
    indexed = [{"index": i, **row} for i, row in enumerate(rows)]
    dataset = ray.data.from_items(indexed, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    resources: dict[str, Any] = {"num_cpus": cpus}
    if memory is not None:
        resources["memory"] = memory
    pool = ray.data.ActorPoolStrategy(size=workers)
    mapped = dataset.map_batches(_actor_class(setup), batch_size=1, compute=pool, batch_format="numpy", **resources)
    try:
        for row in mapped.iter_rows():
            yield int(row["index"]), pickle.loads(row["value"])
    except FaceageError:
        raise
    except Exception as error:  # Ray wraps what failed on a worker; show its cause in one line
        raise RayEngineError(f"the Ray pipeline failed: {_root_cause(error)}") from None


def _root_cause(error: BaseException) -> str:
    seen: BaseException | None = error
    for _ in range(10):  # Ray's errors chain through .cause and __cause__; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, FaceageError):
            return str(seen)
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return f"{type(error).__name__}: {_first_line(error)}"


def _chain_text(error: BaseException) -> str:
    """The messages of ``error`` and the errors it was raised from (Ray keeps the cause's text there)."""
    texts: list[str] = []
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            break
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
