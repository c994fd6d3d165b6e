"""The web app's logic, apart from the HTTP plumbing (``faceage.serve.server``).

``ServeApp.handle`` turns one request (verb, path, query, body) into one ``Response``. Uploads are
bounded before they are read (``max_upload_bytes``), decoded by content with a pixel budget
(``faceage.imageio.decode_image_bytes``), and aged by the one model worker
(``faceage.serve.worker.WorkQueue``). Every error is JSON ``{"error": message}`` with a 4xx/5xx status;
messages never carry a server path and unexpected errors never carry a traceback (those go to
the server's log only).

API:
Only requests addressed to this computer are answered (the Host header names a loopback address,
or the ``--host`` the server listens on), never requests that another web page's scripts send: an
``Origin`` or ``Sec-Fetch-Site`` naming another site is refused, and every POST must carry the
token issued with the page (``X-Faceage-Token``), which other sites cannot read.

    GET  /                         the page (static files from ``faceage/serve/static``)
    GET  /api/info                 version, methods with their age ranges, upload limits
    GET  /api/example.jpg          the embedded example photo
    POST /api/age?method=M&to=70[&strip=10,30,50][&name=photo.jpg]
                                   body: the image file's bytes; answer: JSON report + result URLs
    GET  /api/result/TOKEN/FILE    result.jpg / strip.jpg (the page's view) or result.png / strip.png
                                   (lossless), all with provenance; ``?download=NAME`` as an attachment
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from faceage.age_groups import check_target_age
from faceage.assets import EXAMPLE_PHOTO
from faceage.errors import FaceageError, ImageReadError, ImageTooLargeError, NoFaceError
from faceage.serve.worker import BusyError, WorkQueue
from faceage.version import __version__

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page and its two files are the only static files: a fixed table, so no request path is
# ever joined onto a folder.
_STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
}

# Sent with every answer: nothing may be loaded from, or sent to, another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# names that reach this computer only; a Host header naming anything else is a DNS-rebinding attempt
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_HEADER = "X-Faceage-Token"
_TOKEN_PLACEHOLDER = b"{{faceage-token}}"
_PAGE_TOKENS = 4096  # tokens of recent page loads kept valid (oldest forgotten first)
# anything that looks like a file path: /a/b, C:\a, ./x/y; replaced in every message we send
_PATH_LIKE = re.compile(r"(?<![\w.])(?:[A-Za-z]:[\\/]|~?/|\.\.?[\\/])[^\s'\",;()]*")


@dataclass(frozen=True)
class ServeConfig:
    """Limits of one server.

    max_upload_bytes  refuse larger request bodies before reading them (HTTP 413).
    max_pixels        refuse larger images from their header, before decoding (HTTP 413).
    max_waiting       requests that may wait behind the running one; more get HTTP 503.
    max_strip_ages    ages in one progression strip.
    cache_bytes       results kept for the page to fetch, images and encoded files (oldest dropped first).
    allowed_hosts     host names a request's Host header may give (lower case, no port); None: any
                      (a server listening on every interface, where the names are not known).
    max_pixels_in_flight  decoded upload pixels held at once (decoding, queued, running); an upload
                      whose pixels do not fit waits for room, then gets HTTP 503 (at least max_pixels).
    max_decodes       uploads decoded at the same time.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_waiting: int = 32
    max_strip_ages: int = 8
    cache_bytes: int = 256 * 1024 * 1024
    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS
    max_pixels_in_flight: int = 150_000_000
    max_decodes: int = 2
    room_wait_s: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "max_waiting",
            "max_strip_ages",
            "cache_bytes",
            "max_pixels_in_flight",
            "max_decodes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class MethodChoice:
    """A method the page offers, with the target ages it can aim for."""

    name: str
    summary: str
    min_age: float
    max_age: float


@dataclass(frozen=True, eq=False)
class Rendering:
    """What the worker made of one request.

    image, metadata         the aged photo and its provenance (PNG text chunks).
    report                  ``AgingResult.to_dict()``: method, target, warning, per-face numbers.
    strip, strip_metadata   the progression strip and its provenance, or None.
    """

    image: np.ndarray
    metadata: Mapping[str, str]
    report: dict
    strip: np.ndarray | None = None
    strip_metadata: Mapping[str, str] | None = None


class Headers(Protocol):
    """A request's headers, looked up case-insensitively (``email.message.Message``, a dict in tests)."""

    def get(self, name: str, default: None = None) -> str | None: ...


class Backend(Protocol):
    """The models behind the page (``faceage.serve.backend.EngineBackend``)."""

    def methods(self) -> list[MethodChoice]: ...

    def render(self, rgb: np.ndarray, method: str, target_age: float, strip_ages: Sequence[float]) -> Rendering: ...


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ClientGone(Exception):
    """The client disconnected before its photo's turn came."""


class HTTPError(Exception):
    """An answer other than 200, with a message for the page."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def public_message(message: str) -> str:
    """One line without anything that looks like a file path (those stay in the server log)."""
    text = " ".join(str(message).split())
    return _PATH_LIKE.sub("<path>", text)[:500]


def json_response(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload, allow_nan=False).encode("utf-8"), headers=dict(headers or {}))


class PixelBudget:
    """Decoded pixels held at once, bounded: ``take`` waits for room, ``give`` returns it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.used = 0
        self._room = threading.Condition()

    def take(self, pixels: int, timeout: float) -> bool:
        """Reserve ``pixels`` (False when no room came within ``timeout`` seconds). Something larger
        than the whole budget waits until nothing else is held."""
        with self._room:
            fits = lambda: self.used == 0 or self.used + pixels <= self.capacity  # noqa: E731
            if not self._room.wait_for(fits, timeout):
                return False
            self.used += pixels
            return True

    def give(self, pixels: int) -> None:
        with self._room:
            self.used -= pixels
            self._room.notify_all()


class ResultStore:
    """Finished images by random token, encoded on first request; oldest dropped beyond ``max_bytes``.

    A result's images (RGB + provenance, by name) are served as ``NAME.jpg`` (the page's view:
    quick to encode) or ``NAME.png`` (the lossless download, encoded only when asked for).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._images: OrderedDict[str, dict[str, tuple[np.ndarray, Mapping[str, str]]]] = OrderedDict()
        self._files: dict[str, dict[str, bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._size = 0
        self._lock = threading.Lock()

    def put(self, images: Mapping[str, tuple[np.ndarray, Mapping[str, str]]]) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._images[token] = dict(images)
            self._files[token] = {}
            self._grow(token, sum(rgb.nbytes for rgb, _ in images.values()))
        return token

    def get(self, token: str, filename: str) -> bytes | None:
        """The encoded file (``result.jpg``, ``strip.png``...), or None when unknown or dropped."""
        name, _, suffix = filename.partition(".")
        with self._lock:
            images = self._images.get(token)
            if images is None or name not in images or suffix not in ("jpg", "png"):
                return None
            data = self._files[token].get(filename)
        if data is None:
            rgb, metadata = images[name]
            data = encode_image(rgb, metadata, suffix)
            with self._lock:
                if token in self._images and filename not in self._files[token]:
                    self._files[token][filename] = data
                    self._grow(token, len(data))
        return data

    def _grow(self, token: str, size: int) -> None:
        self._sizes[token] = self._sizes.get(token, 0) + size
        self._size += size
        while self._size > self.max_bytes and len(self._images) > 1:
            dropped, _ = self._images.popitem(last=False)
            del self._files[dropped]
            self._size -= self._sizes.pop(dropped)


def encode_image(rgb: np.ndarray, metadata: Mapping[str, str] | None, suffix: str) -> bytes:
    """JPEG (quality 92) or PNG bytes written by ``faceage.imageio.save_image``, so the provenance is
    stored the one usual way."""
    from faceage.imageio import save_image

    with tempfile.TemporaryDirectory(prefix="faceage-serve-") as folder:
        path = save_image(Path(folder) / f"image.{suffix}", rgb, metadata=metadata, quality=92)
        return path.read_bytes()


@contextlib.contextmanager
def _image_errors():
    """An unreadable upload as the HTTP answer it deserves (413 too large, 415 not an image, else 400)."""
    try:
        yield
    except ImageTooLargeError as error:
        raise HTTPError(413, str(error)) from None
    except ImageReadError as error:
        raise HTTPError(415 if "not an image" in str(error) else 400, str(error)) from None


def _host_name(host: str) -> str:
    """The name part of a Host header, lower case: 'LocalHost:7860' -> 'localhost', '[::1]:80' -> '::1'."""
    try:
        return (urlsplit("//" + host).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _clean_name(name: str | None) -> str:
    """The uploaded file's base name for messages: printable, short, no folders."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:80].strip()
    return base or "upload"


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{what} must be a number of years, got {text[:20]!r}") from None
    if not math.isfinite(value):
        raise HTTPError(400, f"{what} must be a finite number, got {text[:20]!r}")
    return value


class ServeApp:
    """Answers the page's requests; one instance per server, safe to call from many threads.

    Args:
        backend: makes the aged images (runs on the worker thread only).
        config: upload and queue limits.
    """

    def __init__(self, backend: Backend, config: ServeConfig | None = None) -> None:
        self.backend = backend
        self.config = config or ServeConfig()
        self.queue = WorkQueue(self.config.max_waiting)
        self.results = ResultStore(self.config.cache_bytes)
        self._methods = {m.name: m for m in backend.methods()}
        if not self._methods:
            raise FaceageError("no aging method is available to serve")
        self._tokens: OrderedDict[str, None] = OrderedDict()
        self._tokens_lock = threading.Lock()
        self.pixels = PixelBudget(max(self.config.max_pixels_in_flight, self.config.max_pixels))
        self._decoding = threading.BoundedSemaphore(self.config.max_decodes)
        self.skipped_gone = 0  # photos not aged because their client had left

    def issue_token(self) -> str:
        """A new page token (each page load gets one; POSTs must send one back)."""
        token = secrets.token_urlsafe(24)
        with self._tokens_lock:
            self._tokens[token] = None
            while len(self._tokens) > _PAGE_TOKENS:
                self._tokens.popitem(last=False)
        return token

    def _known_token(self, token: str | None) -> bool:
        if not token:
            return False
        with self._tokens_lock:
            return token in self._tokens

    def check_origin(self, verb: str, headers: Headers) -> None:
        """Refuse (HTTP 403) a request not addressed to this server, or anything but a GET that another
        site's page sent or that lacks a page token."""
        allowed = self.config.allowed_hosts
        host = (headers.get("Host") or "").strip()
        name = _host_name(host)
        if allowed is not None and name not in allowed:
            raise HTTPError(403, "this app answers only requests addressed to this computer (Host header)")
        if verb == "GET":
            return  # a link from elsewhere may open the page; other sites cannot read what GETs answer
        origin = headers.get("Origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            raise HTTPError(403, "requests from other web pages are refused (Origin header)")
        if (headers.get("Sec-Fetch-Site") or "same-origin") not in ("same-origin", "none"):
            raise HTTPError(403, "requests from other web pages are refused (Sec-Fetch-Site header)")
        if not self._known_token(headers.get(TOKEN_HEADER)):
            raise HTTPError(403, "this upload does not come from the app's page (no valid page token); reload the page")

    def close(self, timeout: float | None = 600.0) -> bool:
        """Refuse new and waiting photos (HTTP 503), finish the one being aged; returns whether the
        worker stopped within ``timeout`` seconds."""
        return self.queue.close(timeout, cancel_waiting=True)

    def handle(
        self,
        verb: str,
        path: str,
        query: str,
        content_length: int | None,
        read_body: Callable[[int], bytes],
        headers: Headers | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> Response:
        """Answer one request; never raises. ``headers``: the request's (Host, Origin, token...);
        None only for in-process callers, which are not checked. ``still_wanted()`` says whether the
        client is still connected (checked before a queued photo is aged)."""
        try:
            if headers is not None:
                self.check_origin(verb, headers)
            return self._route(verb, path, query, content_length, read_body, still_wanted)
        except HTTPError as error:
            return json_response(error.status, {"error": public_message(str(error))}, error.headers)
        except Exception:  # noqa: BLE001 - the traceback goes to the log, never to the client
            log.exception("unexpected error answering %s %s", verb, path)
            return json_response(500, {"error": "internal error while handling the request (see the server log)"})

    def _route(
        self,
        verb: str,
        path: str,
        query: str,
        content_length: int | None,
        read_body: Callable[[int], bytes],
        still_wanted: Callable[[], bool] | None = None,
    ) -> Response:
        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=20)
        except ValueError:
            raise HTTPError(400, "too many query parameters") from None
        if path in _STATIC_FILES or path in ("/api/info", "/api/example.jpg") or path.startswith("/api/result/"):
            if verb != "GET":
                raise HTTPError(405, f"{verb} is not allowed here", {"Allow": "GET"})
            if path in _STATIC_FILES:
                name, content_type = _STATIC_FILES[path]
                body = (STATIC_DIR / name).read_bytes()
                if name == "index.html":
                    body = body.replace(_TOKEN_PLACEHOLDER, self.issue_token().encode("ascii"))
                return Response(200, body, content_type)
            if path == "/api/info":
                return json_response(200, self.info())
            if path == "/api/example.jpg":
                return Response(200, EXAMPLE_PHOTO.read_bytes(), "image/jpeg")
            return self._result_file(path, params)
        if path == "/api/age":
            if verb != "POST":
                raise HTTPError(405, f"{verb} is not allowed here; POST the image file", {"Allow": "POST"})
            return self._age(params, content_length, read_body, still_wanted)
        if path == "/favicon.ico":
            return Response(204, b"", "image/x-icon")
        raise HTTPError(404, "no such page")

    def info(self) -> dict:
        methods = list(self._methods.values())
        return {
            "version": __version__,
            "methods": [
                {"name": m.name, "summary": m.summary, "min_age": m.min_age, "max_age": m.max_age} for m in methods
            ],
            "default_method": methods[0].name,
            "max_upload_bytes": self.config.max_upload_bytes,
            "max_pixels": self.config.max_pixels,
            "max_strip_ages": self.config.max_strip_ages,
            "example": "/api/example.jpg",
        }

    def _params(self, params: dict[str, list[str]]) -> tuple[MethodChoice, float, list[float], str]:
        def one(key: str, default: str | None = None) -> str | None:
            values = params.get(key)
            return values[-1] if values else default

        name = one("method", next(iter(self._methods))) or ""
        method = self._methods.get(name)
        if method is None:
            raise HTTPError(400, f"unknown method {name[:40]!r}; choose from {', '.join(self._methods)}")
        to = one("to")
        if to is None:
            raise HTTPError(400, "the target age is missing (to=...)")
        target = _number(to, "target age")
        strip_text = one("strip", "") or ""
        strip = [_number(t.strip(), "progression age") for t in strip_text.split(",") if t.strip()]
        if len(strip) > self.config.max_strip_ages:
            raise HTTPError(400, f"at most {self.config.max_strip_ages} progression ages, got {len(strip)}")
        try:
            check_target_age(target)
            for age in strip:
                check_target_age(age, "progression age")
        except ValueError as error:
            raise HTTPError(400, str(error)) from None
        return method, target, strip, _clean_name(one("name"))

    def _age(
        self,
        params: dict[str, list[str]],
        content_length: int | None,
        read_body: Callable[[int], bytes],
        still_wanted: Callable[[], bool] | None = None,
    ) -> Response:
        from faceage.imageio import decode_image_bytes, image_header

        start = time.perf_counter()
        method, target, strip, name = self._params(params)
        limit = self.config.max_upload_bytes
        if content_length is None:
            raise HTTPError(411, "the upload has no Content-Length")
        if content_length > limit:
            raise HTTPError(
                413, f"{name}: the file is {content_length / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB"
            )
        if content_length == 0:
            raise HTTPError(400, f"{name}: no file was sent (the upload is empty)")
        body = read_body(content_length)
        if len(body) != content_length:
            raise HTTPError(400, f"{name}: the upload was cut short")
        with _image_errors():  # the header first: size and plausibility, nothing decoded yet
            width, height, _ = image_header(body, name=name, max_pixels=self.config.max_pixels)
        if self.queue.pending() > self.queue.max_waiting:
            raise HTTPError(503, "the server is busy with other photos; try again in a minute", {"Retry-After": "30"})
        pixels = width * height
        if not self.pixels.take(pixels, self.config.room_wait_s):
            raise HTTPError(
                503, "the server is busy decoding other photos; try again in a minute", {"Retry-After": "30"}
            )
        try:
            with self._decoding, _image_errors():
                rgb = decode_image_bytes(body, name=name, max_pixels=self.config.max_pixels)
            del body
            return self._age_decoded(rgb, method, target, strip, name, start, still_wanted)
        finally:
            self.pixels.give(pixels)

    def _age_decoded(
        self,
        rgb: np.ndarray,
        method: MethodChoice,
        target: float,
        strip: list[float],
        name: str,
        start: float,
        still_wanted: Callable[[], bool] | None,
    ) -> Response:
        def job() -> tuple[Rendering, float, float]:
            if still_wanted is not None and not still_wanted():
                raise ClientGone()  # the client left while waiting: nobody would see the result
            began = time.perf_counter()
            rendering = self.backend.render(rgb, method.name, target, strip)
            return rendering, began, time.perf_counter()

        try:
            ticket = self.queue.submit(job)
        except BusyError as error:
            raise HTTPError(
                503,
                "the server is shutting down"
                if "shutting" in str(error)
                else "the server is busy with other photos; try again in a minute",
                {"Retry-After": "30"},
            ) from None
        try:
            rendering, began, ended = ticket.future.result()
        except BusyError:
            raise HTTPError(503, "the server is shutting down; try again in a minute", {"Retry-After": "30"}) from None
        except ClientGone:
            self.skipped_gone += 1
            raise HTTPError(499, "the client closed the connection before its turn") from None
        except NoFaceError as error:
            raise HTTPError(422, f"{name}: {error}") from None
        except FaceageError as error:
            log.warning("request refused: %s", error)
            raise HTTPError(400, f"{name}: {error}") from None
        return self._answer(rendering, method, ticket.position, start, began, ended)

    def _answer(
        self, rendering: Rendering, method: MethodChoice, position: int, start: float, began: float, ended: float
    ) -> Response:
        report = rendering.report
        age_label = f"{report['target_age']:g}"
        images = {"result": (rendering.image, rendering.metadata)}
        if rendering.strip is not None:
            images["strip"] = (rendering.strip, rendering.strip_metadata or {})
        token = self.results.put(images)
        base = f"/api/result/{token}"
        height, width = rendering.image.shape[:2]
        payload = {
            **report,
            "image": {"url": f"{base}/result.jpg", "width": width, "height": height},
            "download": f"{base}/result.png?download=faceage-{method.name}-{age_label}.png",
            "strip": None,
            "queue_position": position,
            "wait_ms": round((began - start) * 1000.0, 1),
            "run_ms": round((ended - began) * 1000.0, 1),
            "total_ms": round((time.perf_counter() - start) * 1000.0, 1),
        }
        if rendering.strip is not None:
            payload["strip"] = {
                "url": f"{base}/strip.jpg",
                "download": f"{base}/strip.png?download=faceage-{method.name}-progression.png",
            }
        return json_response(200, payload)

    def _result_file(self, path: str, params: dict[str, list[str]]) -> Response:
        parts = path.split("/")  # ["", "api", "result", token, file]
        if len(parts) != 5 or not _TOKEN.match(parts[3]):
            raise HTTPError(404, "no such result")
        data = self.results.get(parts[3], parts[4])
        if data is None:
            raise HTTPError(404, "this result has expired; age the photo again")
        headers = {}
        download = params.get("download", [""])[-1]
        if download:
            filename = re.sub(r"[^A-Za-z0-9._-]", "_", download)[:80] or "faceage.png"
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(200, data, "image/png" if parts[4].endswith(".png") else "image/jpeg", headers)
