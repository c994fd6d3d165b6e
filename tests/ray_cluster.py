"""A real Ray cluster of two nodes on this machine, for the Ray engine's tests and benchmark:
`ray start --head` and a second node joined with `ray start --address`, each `--block` in a session
of its own (own temp folder, 1 CPU, 100 MB of object store), stopped by process id.

Importable from the tests (pytest puts tests/ on sys.path) and from benchmarks/batch.py.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
# The cluster stays on a loopback address: Ray turns 127.0.0.1 into the machine's outward address
# (other hosts could not reach 127.0.0.1), but not 127.0.0.2, another loopback address.
NODE_IP = "127.0.0.2"
# its own token: the cluster requires one, and a user's ~/.ray/auth_token is left alone
ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((NODE_IP, 0))
        return sock.getsockname()[1]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.25)


def listening(port: int) -> bool:
    try:
        socket.create_connection((NODE_IP, port), timeout=1).close()
        return True
    except OSError:
        return False


class Cluster:
    """A head node and a second node, each `ray start --block` in a session of its own."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fa-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.address = f"{NODE_IP}:{self.port}"
        self.env = {**os.environ, **ENV}
        self.nodes: list[subprocess.Popen] = []

    def start_node(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")
        common = ["--block", "--num-cpus=1", f"--object-store-memory={100 * 2**20}", "--disable-usage-stats"]
        command = [str(RAY), "start", *args, f"--node-ip-address={NODE_IP}", f"--temp-dir={self.root / name}", *common]
        self.nodes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        )

    def alive_nodes(self) -> int:
        script = "import ray, sys; ray.init(address=sys.argv[1]); print(sum(n['Alive'] for n in ray.nodes()))"
        done = subprocess.run(
            [sys.executable, "-c", script, self.address], capture_output=True, text=True, env=self.env, timeout=120
        )
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0

    def stop(self) -> None:
        for node in reversed(self.nodes):  # `ray start --block` stops its node's processes on SIGTERM
            if node.poll() is None:
                node.terminate()
        for node in self.nodes:
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.pids(""):  # anything of the nodes still there (Ray puts workers in groups of their own)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def pids(self, title: str) -> list[int]:
        """Processes of this cluster (in the sessions of its `ray start`s) whose command line contains
        ``title`` (Ray names its workers by what they run)."""
        sessions = {node.pid for node in self.nodes}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                if title in cmdline and os.getsid(int(entry.name)) in sessions:
                    found.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
        return found

    def start(self) -> None:
        self.start_node("head", "--head", f"--port={self.port}", "--include-dashboard=false")
        wait_for(lambda: listening(self.port), 90, "the head node")
        self.start_node("node2", f"--address={self.address}")
        wait_for(lambda: self.alive_nodes() == 2, 120, "the second node to join")
