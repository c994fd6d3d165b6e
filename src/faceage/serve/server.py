"""HTTP plumbing for the web app: the standard library's threading server in front of ``ServeApp``.

Each connection gets a thread that only parses, reads the upload and writes the answer; the models
run on the app's single worker (``faceage.serve.worker``). No third-party web framework: nothing to
install, nothing that could call out. The standard server is hardened where it is lax:

- framing: only ``Content-Length`` bodies (one, ASCII digits); ``Transfer-Encoding`` gets 411 and
  the connection is closed, so a body can never be read as a next request;
- time: a request's line and headers must arrive within ``HEAD_S`` (idle keep-alive included), its
  body at ``MIN_BODY_RATE`` on average after ``BODY_GRACE_S``; a stalled body gets 408, a trickling
  head is cut off; at most ``MAX_CONNECTIONS`` connections are served at once (others get 503).
  Each is an attribute of the server (``head_s``, ``body_grace_s``, ``min_body_rate``,
  ``max_connections``) to tune;
- every answer, the library's own errors included, is JSON with the security headers;
- a photo whose client has left is not aged;
- ``stop()`` (SIGTERM): no new connections, idle ones closed, waiting photos answered 503, the one
  being aged finished and answered, then every connection thread joined.
"""

from __future__ import annotations

import http.client
import logging
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from faceage.serve.app import SECURITY_HEADERS, HTTPError, ServeApp, json_response, public_message

log = logging.getLogger(__name__)

# An upload refused before it was read is read and dropped up to this size, so the browser gets
# the answer instead of a reset connection; a larger one is cut off.
_DRAIN_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 20
_LENGTH = re.compile(r"[0-9]{1,15}\Z")

HEAD_S = 30.0  # seconds for a request line and its headers (and for an idle keep-alive connection)
BODY_GRACE_S = 30.0  # a body may take this long plus its size at MIN_BODY_RATE
MIN_BODY_RATE = 32 * 1024  # bytes per second
MAX_CONNECTIONS = 128


class _Handler(BaseHTTPRequestHandler):
    app: ServeApp  # set on the subclass ``make_server`` builds
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds one socket read or write may stall (the deadlines below are tighter)

    def version_string(self) -> str:
        return "faceage"

    def setup(self) -> None:
        super().setup()
        self.server.track(self, "idle", time.monotonic() + self.server.head_s)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self)

    def handle_one_request(self) -> None:
        self.server.track(self, "idle", time.monotonic() + self.server.head_s)  # a trickled head is cut then
        super().handle_one_request()
        if self.server.stopping:
            self.close_connection = True

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.track(self, "busy", None)  # from here the body deadline applies (read_body)
        return ok

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        if self.headers.get_all("Transfer-Encoding"):
            # not supported: answer, and close, so the body is never parsed as a next request
            self._send(json_response(411, {"error": "send the upload with a Content-Length, not chunked"}), close=True)
            return
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            self._send(json_response(400, {"error": "more than one Content-Length"}), close=True)
            return
        if lengths and not _LENGTH.match(lengths[0].strip()):
            self._send(json_response(400, {"error": "bad Content-Length"}), close=True)
            return
        length = int(lengths[0]) if lengths else None
        read = 0
        broken = False  # the body could not be read (stalled, cut short): nothing left to drain
        deadline = time.monotonic() + self.server.body_grace_s + (length or 0) / self.server.min_body_rate

        def read_body(n: int) -> bytes:
            nonlocal read, broken
            self.server.track(self, "busy", deadline + 5.0)  # the watchdog's backstop
            chunks = []
            try:
                while n > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    self.connection.settimeout(min(left, self.timeout))
                    data = self.rfile.read1(min(n, _CHUNK))
                    if not data:
                        break
                    chunks.append(data)
                    read += len(data)
                    n -= len(data)
            except TimeoutError:
                self.close_connection = broken = True
                raise HTTPError(408, "the upload stalled; send it again") from None
            except OSError:
                self.close_connection = broken = True
                raise HTTPError(400, "the upload was cut short") from None
            finally:
                self.connection.settimeout(self.timeout)
                self.server.track(self, "busy", None)
            return b"".join(chunks)

        response = self.app.handle(verb, url.path, url.query, length, read_body, self.headers, self._client_connected)
        close = self.close_connection
        unread = (length or 0) - read
        if unread > 0:
            if unread <= _DRAIN_LIMIT and not broken:
                self._drain(unread, deadline)  # so the client reads our answer instead of a reset
            close = True
        self._send(response, close)

    def _client_connected(self) -> bool:
        """False once the client has closed its side (checked without blocking or consuming data)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _drain(self, n: int, deadline: float) -> None:
        try:
            while n > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.1, min(deadline - time.monotonic(), self.timeout)))
                data = self.rfile.read1(min(n, _CHUNK))
                if not data:
                    return
                n -= len(data)
        except OSError:
            return
        finally:
            try:
                self.connection.settimeout(self.timeout)
            except OSError:
                pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The library's own errors (bad request line, header too long, unknown verb) as our JSON."""
        self.log_error("code %d, message %s", code, message)
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsable line reads as HTTP/0.9: no status line at all
        reason = message or http.client.responses.get(code, "error")
        self._send(json_response(code, {"error": public_message(f"{code} {reason}")}), close=True)

    def _send(self, response, close: bool = False) -> None:
        close = close or self.server.stopping
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
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the connection threads: every request gets its answer
    block_on_close = True
    # connections the OS holds before they are accepted; the socketserver default of 5 resets
    # the rest of a burst of uploads (the worker queue, not the backlog, should decide who waits)
    request_queue_size = 128

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_s, self.body_grace_s, self.min_body_rate = HEAD_S, BODY_GRACE_S, MIN_BODY_RATE
        self.max_connections = MAX_CONNECTIONS
        self.watch_s = 1.0
        self.stopping = False
        self._conns: dict[_Handler, tuple[str, float | None]] = {}
        self._lock = threading.Lock()
        self._watchdog = threading.Thread(target=self._watch, name="faceage-http-watchdog", daemon=True)
        self._watchdog.start()

    def track(self, handler: _Handler, state: str, deadline: float | None) -> None:
        with self._lock:
            self._conns[handler] = (state, deadline)
        if state == "idle" and self.stopping:
            _cut(handler.connection)

    def untrack(self, handler: _Handler) -> None:
        with self._lock:
            self._conns.pop(handler, None)

    def verify_request(self, request, client_address) -> bool:
        with self._lock:
            crowded = len(self._conns) >= self.max_connections
        if crowded or self.stopping:
            _refuse(request, "the server is shutting down" if self.stopping else "too many connections")
            return False
        return True

    def _watch(self) -> None:
        """Cut connections past their deadline (a head trickled byte by byte, a body far too slow)."""
        while True:
            time.sleep(self.watch_s)
            now = time.monotonic()
            with self._lock:
                late = [h for h, (_, deadline) in self._conns.items() if deadline is not None and now > deadline]
            for handler in late:
                log.info("closing a connection from %s: too slow", handler.client_address[0])
                _cut(handler.connection)

    def stop(self, timeout: float | None = 600.0) -> bool:
        """Stop serving (call from another thread than ``serve_forever``'s, or after it returned):
        idle connections closed, waiting photos answered 503, the running one finished and
        answered, connection threads joined. Returns whether the model worker stopped in time."""
        self.stopping = True
        self.shutdown()
        with self._lock:
            idle = [h for h, (state, _) in self._conns.items() if state == "idle"]
        for handler in idle:
            _cut(handler.connection)
        stopped = self.app.close(timeout)
        self.server_close()  # joins the connection threads, now all answering or answered
        return stopped

    @property
    def app(self) -> ServeApp:
        return self.RequestHandlerClass.app  # type: ignore[attr-defined]  # the subclass make_server builds


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _refuse(sock: socket.socket, message: str) -> None:
    """A 503 written straight to a connection that will not get a thread, then closed."""
    body = json_response(503, {"error": message}).body
    head = [
        "HTTP/1.1 503 Service Unavailable",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Retry-After: 5",
        *[f"{key}: {value}" for key, value in SECURITY_HEADERS.items()],
    ]
    try:
        sock.settimeout(1.0)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def make_server(app: ServeApp, host: str = "127.0.0.1", port: int = 7860) -> _Server:
    """A bound server (port 0 picks a free one: read ``server.server_address``); call
    ``serve_forever()`` to answer requests and ``stop()`` to end."""
    handler = type("FaceageHandler", (_Handler,), {"app": app})
    return _Server((host, port), handler)


def serve_in_thread(app: ServeApp, host: str = "127.0.0.1", port: int = 0) -> tuple[_Server, str]:
    """Start a server on a background thread; returns it and its base URL (for tests and benchmarks).
    Stop it with ``server.shutdown(); server.server_close(); app.close()``, or ``server.stop()``."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="faceage-http", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host!s}:{bound_port}"
