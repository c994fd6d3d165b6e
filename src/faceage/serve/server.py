"""HTTP for the web app: Starlette routes in front of ``ServeApp``, served by uvicorn's h11 protocol.

h11 does the framing strictly (RFC 9112): a malformed request line or header (a space before the
colon, conflicting or non-numeric ``Content-Length``, both ``Content-Length`` and chunked) is
answered 400 and the connection closed, so a body can never be read as a next request. What is
added here, each in a few lines:

- every answer, uvicorn's own 400s included, is JSON with the security headers;
- a request answered before its body was read (refused from its headers: 411, 413, 403...) gets
  its answer at once and the connection is closed, so the unread body is never parsed; the close
  lingers (what arrives is read and dropped, up to ``DRAIN_LIMIT`` bytes within the body deadline)
  so a browser still sending its upload reads the answer instead of a reset;
- time: a request's line and headers must arrive within ``HttpLimits.head_s`` of its first byte
  (or of the connection), an idle keep-alive connection is closed after ``keep_alive_s``, a body
  must arrive at ``min_body_rate`` on average after ``body_grace_s`` (else 408); at most
  ``max_connections`` connections are served at once (uvicorn answers others 503);
- a photo whose client has left is not aged (the app's ``still_wanted``);
- ``stop()`` (and SIGTERM in ``faceage serve``): no new connections, idle ones closed, waiting
  photos answered 503 at once, the one being aged finished and answered.

The models run on the app's single worker thread (``faceage.serve.worker``); decoding runs in
Starlette's thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, cast

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from faceage.assets import EXAMPLE_PHOTO
from faceage.serve.app import (
    SECURITY_HEADERS,
    STATIC_DIR,
    HTTPError,
    Response,
    ServeApp,
    json_response,
    public_message,
)

log = logging.getLogger(__name__)


@dataclass
class HttpLimits:
    """Deadlines and caps of one server (tests tighten them)."""

    head_s: float = 30.0  # a request line and its headers, from their first byte
    keep_alive_s: float = 30.0  # an idle connection between requests
    body_grace_s: float = 30.0  # a body may take this long plus its size at min_body_rate
    min_body_rate: float = 32 * 1024  # bytes per second
    max_connections: int = 128
    shutdown_s: float = 600.0  # the photo being aged when the server stops


# an upload refused before it was read is read and dropped up to this size while the connection closes
DRAIN_LIMIT = 64 * 1024 * 1024
_JSON = b"application/json"
_STALLED = "faceage.stalled"  # set in a request's scope when its body stopped coming (408)
_SECURITY = [(key.encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]
_SECURITY_NAMES = {key.lower() for key, _ in _SECURITY}


class _LingeringTransport:
    """The connection's transport as uvicorn sees it, except that ``close()`` while the client is
    still sending a body stops the answering but keeps reading (``_Protocol.linger``)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name: str) -> Any:  # everything else as the transport
        return getattr(self._transport, name)

    def close(self) -> None:
        if not self._protocol.linger():
            self._transport.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the head deadline, a lingering close and JSON 400s (``limits``
    set per server)."""

    limits: HttpLimits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        self.lingering, self._lost, self._dropped = False, False, 0
        self._raw = transport
        super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
        self._head_timer: asyncio.TimerHandle | None = None
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the answer is sent: the rest of the upload is dropped
            self._dropped += len(data)
            if self._dropped > DRAIN_LIMIT:
                self._raw.close()
            return
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._stop_head_timer()
        super().connection_lost(exc)

    def linger(self) -> bool:
        """Whether a close now lingers: the client is still sending the body of a request that was
        answered without it. The connection is closed when the client closes, past ``DRAIN_LIMIT``
        bytes, or at the body deadline."""
        if self.lingering:
            return True
        if self._lost or self._raw.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return False
        if self.scope is not None and self.scope.get(_STALLED):
            return False  # its body stopped coming: nothing to wait for
        self.lingering = True
        self._raw.resume_reading()
        self.loop.call_later(self.limits.body_grace_s, self._raw.close)
        return True

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _watch_head(self) -> None:
        """A deadline runs from a head's first byte (or the connection) until the head is complete."""
        if not self._waiting_for_head():
            self._stop_head_timer()
        elif self._head_timer is None and (self.cycle is None or self.conn.trailing_data[0]):
            self._head_timer = self.loop.call_later(self.limits.head_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            log.info("closing a connection from %s: its request head was too slow", (self.client or ("?",))[0])
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request (bad framing): 400 as JSON, then close."""
        error = sys.exc_info()[1]  # called inside uvicorn's ``except h11.RemoteProtocolError``
        reason = str(error) if isinstance(error, h11.RemoteProtocolError) and str(error) else "malformed request"
        body = json.dumps({"error": public_message(f"400 bad request: {reason}")}).encode()
        headers = [
            (b"Content-Type", _JSON),
            (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"),
            *_SECURITY,
        ]
        try:
            output = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
            output += self.conn.send(h11.Data(data=body)) or b""
            output += self.conn.send(h11.EndOfMessage()) or b""
            self.transport.write(output or b"")
        except h11.LocalProtocolError:
            pass  # a response had started already: nothing more can be said
        self.transport.close()


class _Guard:
    """Outermost ASGI layer: the security headers on every answer, HTTP errors as JSON, and
    ``Connection: close`` on an answer sent before the request's body was read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
        body_done = not has_body

        async def tracked_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_NAMES]
                extra = list(_SECURITY)
                if not body_done:
                    extra.append((b"Connection", b"close"))
                message = {**message, "headers": kept + extra}
            await send(message)

        if scope.get("http_version") not in ("1.0", "1.1"):  # h11 parses "HTTP/9.9" as well
            body_done = False  # close after the answer
            response = _error(HTTPError(505, f"505 HTTP/{scope.get('http_version')} is not supported; use HTTP/1.1"))
            await response(scope, tracked_receive, guarded_send)
            return
        await self.app(scope, tracked_receive, guarded_send)


def _to_starlette(response: Response) -> StarletteResponse:
    return StarletteResponse(response.body, response.status, response.headers, media_type=response.content_type)


def _error(error: HTTPError) -> StarletteResponse:
    return _to_starlette(json_response(error.status, {"error": public_message(str(error))}, error.headers))


async def _read_body(request: Request, length: int, limits: HttpLimits) -> bytes:
    """The body, at most ``length`` bytes, within its deadline (HTTP 408 when it stalls, 400 when the
    client leaves)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.body_grace_s + length / limits.min_body_rate
    chunks: list[bytes] = []
    stream = request.stream().__aiter__()
    received = 0
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            break
        except TimeoutError:
            request.scope[_STALLED] = True  # its connection is closed at once (no lingering)
            raise HTTPError(408, "the upload stalled; send it again") from None
        except Exception as error:  # starlette's ClientDisconnect
            if type(error).__name__ == "ClientDisconnect":
                raise HTTPError(400, "the upload was cut short") from None
            raise
        received += len(chunk)
        if received > length:
            raise HTTPError(400, "the upload is longer than its Content-Length")
        chunks.append(chunk)
    return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: threading.Event) -> None:
    """Set ``gone`` when the client closes the connection (after the body was read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def build_asgi(app: ServeApp, limits: HttpLimits) -> ASGIApp:
    """The web app as an ASGI application: Starlette routes over ``app``, inside ``_Guard``."""
    from starlette.concurrency import run_in_threadpool

    def checked(handler):
        async def endpoint(request: Request) -> StarletteResponse:
            try:
                app.check_origin(request.method, request.headers)
                return await handler(request)
            except HTTPError as error:
                return _error(error)
            except Exception:  # noqa: BLE001 - the traceback goes to the log, never to the client
                log.exception("unexpected error answering %s %s", request.method, request.url.path)
                return _error(HTTPError(500, "internal error while handling the request (see the server log)"))

        return endpoint

    async def page(request: Request) -> StarletteResponse:
        return StarletteResponse(app.page(), media_type="text/html; charset=utf-8")

    async def info(request: Request) -> StarletteResponse:
        return _to_starlette(json_response(200, app.info()))

    async def example(request: Request) -> StarletteResponse:
        return StarletteResponse(EXAMPLE_PHOTO.read_bytes(), media_type="image/jpeg")

    async def favicon(request: Request) -> StarletteResponse:
        return StarletteResponse(b"", 204)

    async def result(request: Request) -> StarletteResponse:
        response = await run_in_threadpool(
            app.result_file,
            request.path_params["token"],
            request.path_params["file"],
            request.query_params.get("download"),
        )
        return _to_starlette(response)

    async def progress(request: Request) -> StarletteResponse:
        return _to_starlette(json_response(200, app.progress(request.path_params["job"])))

    async def age(request: Request) -> StarletteResponse:
        upload = app.upload_request(request.url.query, request.headers.get("content-length"))
        body = await _read_body(request, upload.length, limits)
        gone = threading.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(request.receive, gone))
        try:
            response = await run_in_threadpool(app.age_upload, upload, body, lambda: not gone.is_set())
        finally:
            watcher.cancel()
        return _to_starlette(response)

    async def not_found(request: Request, exc: Exception) -> StarletteResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        text = {404: "no such page", 405: f"{request.method} is not allowed here"}.get(status, f"{status} error")
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return _error(HTTPError(status, text, headers))

    routes = [
        Route("/", checked(page), methods=["GET"]),
        Route("/index.html", checked(page), methods=["GET"]),
        Route("/favicon.ico", checked(favicon), methods=["GET"]),
        Route("/api/info", checked(info), methods=["GET"]),
        Route("/api/example.jpg", checked(example), methods=["GET"]),
        Route("/api/age", checked(age), methods=["POST"]),
        Route("/api/progress/{job}", checked(progress), methods=["GET"]),
        Route("/api/result/{token}/{file}", checked(result), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR)),
    ]
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    return _Guard(starlette)


class FaceageServer(uvicorn.Server):
    """uvicorn's server, with the app's worker stopped as it shuts down: the waiting photos are
    answered 503 at once, the one being aged is finished and answered."""

    def __init__(self, config: uvicorn.Config, app: ServeApp, limits: HttpLimits, sock: socket.socket) -> None:
        super().__init__(config)
        self.app, self.limits, self.socket = app, limits, sock
        self.worker_stopped = True
        self._thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(None, self.app.close, self.limits.shutdown_s)
        await super().shutdown(sockets)
        self.worker_stopped = await closing

    def serve_forever(self) -> None:
        """Answer requests until ``stop()`` (or SIGINT/SIGTERM on the main thread)."""
        self.run(sockets=[self.socket])

    def stop(self, timeout: float | None = 600.0) -> bool:
        """Stop serving (from another thread than ``serve_forever``'s): idle connections closed,
        waiting photos answered 503, the running one finished and answered. Returns whether the
        model worker stopped in time."""
        self.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        return self.worker_stopped


def make_server(
    app: ServeApp, host: str = "127.0.0.1", port: int = 7860, limits: HttpLimits | None = None
) -> FaceageServer:
    """A server bound to ``host:port`` (port 0 picks a free one: read ``server.server_address``);
    ``serve_forever()`` answers requests. Raises ``OSError`` when the address cannot be bound."""
    limits = limits or HttpLimits()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    protocol = type("FaceageProtocol", (_Protocol,), {"limits": limits})
    config = uvicorn.Config(
        build_asgi(app, limits),
        http=protocol,
        ws="none",
        lifespan="off",
        loop="asyncio",
        interface="asgi3",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=int(max(1, limits.keep_alive_s)),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=int(limits.shutdown_s),
    )
    return FaceageServer(config, app, limits, sock)


def serve_in_thread(
    app: ServeApp, host: str = "127.0.0.1", port: int = 0, limits: HttpLimits | None = None
) -> tuple[FaceageServer, str]:
    """Start a server on a background thread; returns it and its base URL (for tests and benchmarks).
    Stop it with ``server.stop()``."""
    server = make_server(app, host, port, limits)
    thread = threading.Thread(target=server.serve_forever, name="faceage-http", daemon=True)
    server._thread = thread
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    bound_host, bound_port = server.server_address
    return server, f"http://{bound_host}:{bound_port}"
