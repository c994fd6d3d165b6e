"""``faceage serve``: the web app on this computer (uvicorn + Starlette, one model worker)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from faceage.methods.registry import method_help, method_option, set_option


def allowed_hosts(host: str) -> frozenset[str] | None:
    """Host header names the app answers: the loopback names, plus ``--host`` when it is a name or
    address of its own; None (any name) when listening on every interface."""
    from faceage.serve.app import LOOPBACK_HOSTS

    name = host.strip().strip("[]").lower()
    if name in ("", "0.0.0.0", "::"):
        return None
    return LOOPBACK_HOSTS | {name}


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--host", default="127.0.0.1", help="Address to listen on; 127.0.0.1 keeps the app private to this computer."
)
@click.option("--port", type=click.IntRange(0, 65535), default=7860, help="Port (0 picks a free one).")
@click.option(
    "--method",
    **method_option(),
    help="Method offered first; every other method with installed weights is offered too. " + method_help(),
)
@set_option
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Weights file for --method instead of its shipped one.",
)
@click.option("--device", default="cpu", help="torch device for the methods (cpu, cuda, cuda:1...).")
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    help="Largest upload accepted, in MiB.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=50_000_000,
    help="Largest image accepted, in pixels (checked on the header, before decoding).",
)
@click.option(
    "--max-faces",
    type=click.IntRange(1, 100),
    default=8,
    help="Faces aged per photo (largest first); bounds the time one request takes.",
)
@click.option(
    "--queue",
    "max_waiting",
    type=click.IntRange(1, 10_000),
    default=32,
    help="Requests that may wait for the model worker; more are answered 'busy' (HTTP 503).",
)
def serve(
    host: str,
    port: int,
    method: str,
    sets: dict[str, str],
    weights: Path | None,
    device: str,
    max_upload_mb: float,
    max_pixels: int,
    max_faces: int,
    max_waiting: int,
) -> None:
    """Run the web app: drop a photo in, slide through the ages, compare before and after, download."""
    import logging

    from faceage.serve.app import ServeApp, ServeConfig
    from faceage.serve.backend import EngineBackend
    from faceage.serve.server import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = ServeConfig(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=max_pixels,
        max_waiting=max_waiting,
        allowed_hosts=allowed_hosts(host),
    )
    click.echo(f"loading {method}" + (f" from {weights}" if weights else " (shipped weights)") + " ...")
    backend = EngineBackend(method, device=device, weights=weights, max_faces=max_faces, options=sets)
    app = ServeApp(backend, config)
    try:
        server = make_server(app, host, port)
    except OSError as error:
        app.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    bound_host, bound_port = server.server_address
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this computer can use the app", err=True)
    click.echo(f"methods: {', '.join(backend.agers)}")
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"faceage web app: http://{shown}:{bound_port}/  (Ctrl-C stops it)")
    # uvicorn stops on SIGINT/SIGTERM (finishing the photo being aged, answering the waiting ones
    # 503), then raises the signal again: this handler makes that a clean exit, not a kill
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the exit short
    if server.should_exit:
        click.echo("stopped: the photo being aged was finished, the waiting ones refused", err=True)
    # The worker must be out of the model before the interpreter exits: leaving it inside torch
    # (as a daemon thread) made exits end in "terminate called without an active exception".
    if not server.worker_stopped or not app.close(timeout=600):
        click.echo("the photo being aged did not finish in time; exiting without waiting", err=True)
        os._exit(1)  # skip interpreter teardown under a running model thread (that is what aborts)
