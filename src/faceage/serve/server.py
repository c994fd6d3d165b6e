"""HTTP plumbing for the web app: the standard library's threading server in front of ``ServeApp``.

Each connection gets a thread that only parses, reads the upload and writes the answer; the models
run on the app's single worker (``faceage.serve.worker``). No third-party web framework: nothing to
install, nothing that could call out.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from faceage.serve.app import SECURITY_HEADERS, ServeApp, json_response

log = logging.getLogger(__name__)

# An upload refused before it was read is read and dropped up to this size, so the browser gets
# the answer instead of a reset connection; a larger one is cut off.
_DRAIN_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    app: ServeApp  # set on the subclass ``make_server`` builds
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may stall while sending
    error_content_type = "application/json"
    error_message_format = '{"error": "%(code)d %(message)s"}'

    def version_string(self) -> str:
        return "faceage"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        header = self.headers.get("Content-Length")
        if header is not None and not header.strip().isdigit():
            self._send(json_response(400, {"error": "bad Content-Length"}), close=True)
            return
        length = int(header) if header is not None else None
        read = 0

        def read_body(n: int) -> bytes:
            nonlocal read
            data = self.rfile.read(n)
            read += len(data)
            return data

        response = self.app.handle(verb, url.path, url.query, length, read_body, self.headers)
        close = False
        unread = (length or 0) - read
        if unread > 0:
            if unread <= _DRAIN_LIMIT:
                self._drain(unread)
            close = True
        self._send(response, close)

    def _drain(self, n: int) -> None:
        try:
            while n > 0:
                data = self.rfile.read(min(n, _CHUNK))
                if not data:
                    return
                n -= len(data)
        except OSError:
            return

    def _send(self, response, close: bool = False) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for key, value in {**SECURITY_HEADERS, **response.headers}.items():
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to tell it

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # connections the OS holds before they are accepted; the socketserver default of 5 resets
    # the rest of a burst of uploads (the worker queue, not the backlog, should decide who waits)
    request_queue_size = 128


def make_server(app: ServeApp, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A bound server (port 0 picks a free one: read ``server.server_address``); call
    ``serve_forever()`` to answer requests."""
    handler = type("FaceageHandler", (_Handler,), {"app": app})
    return _Server((host, port), handler)


def serve_in_thread(app: ServeApp, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server on a background thread; returns it and its base URL (for tests and benchmarks).
    Stop it with ``server.shutdown(); server.server_close(); app.close()``."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="faceage-http", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host}:{bound_port}"
