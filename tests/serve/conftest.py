"""A running web app with a tiny random IPCGAN generator (the real face models around it), shared by
the API and browser tests (HTTP helpers are in serve_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceage.assets import EXAMPLE_PHOTO
from faceage.serve.app import ServeApp, ServeConfig

# small limits, so that "too large" needs only a small upload
TEST_CONFIG = ServeConfig(max_upload_bytes=1024 * 1024, max_pixels=4_000_000, max_waiting=4)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A random IPCGAN generator a few KB big, saved the way trained ones are."""
    from faceage.models.io import save_flat
    from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator

    path = tmp_path_factory.mktemp("weights") / "tiny_ipcgan.safetensors"
    save_flat(IPCGANGenerator(IPCGANConfig(g_channels=4, g_blocks=1, residual=False)), path, {"grouping": "lifespan"})
    return path


@pytest.fixture(scope="session")
def backend(tiny_weights):
    from faceage.serve.backend import EngineBackend

    return EngineBackend("ipcgan", weights=tiny_weights, others=False)


@pytest.fixture(scope="session")
def server_url(backend) -> str:
    """Base URL of a server on a free port, on a background thread, for the whole session."""
    from faceage.serve.server import serve_in_thread

    app = ServeApp(backend, TEST_CONFIG)
    server, url = serve_in_thread(app)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def example_bytes() -> bytes:
    return EXAMPLE_PHOTO.read_bytes()
