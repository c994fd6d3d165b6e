"""The web app's logic, apart from HTTP (``faceage.serve.server`` puts it behind Starlette and uvicorn).

``ServeApp`` checks who asks (``check_origin``), checks an upload's parameters and declared size
before its body is read (``upload_request``), then decodes it by content with a pixel budget
(``faceage.imageio.decode_image_bytes``) and has the one model worker age it
(``faceage.serve.worker.WorkQueue``, ``age_upload``). Every error is an ``HTTPError`` that becomes
JSON ``{"error": message}`` with a 4xx/5xx status; messages never carry a server path and
unexpected errors never carry a traceback (those go to the server's log only).

API:
Only requests addressed to this computer are answered (the Host header names a loopback address,
or the ``--host`` the server listens on), never requests that another web page's scripts send: an
``Origin`` or ``Sec-Fetch-Site`` naming another site is refused, and every POST must carry the
token issued with the page (``X-Faceage-Token``), which other sites cannot read.

    GET  /                         the page (static files from ``faceage/serve/static``)
    GET  /api/info                 version, methods with their age ranges, options and
                                   progression ages, upload limits
    GET  /api/example.jpg          the embedded example photo
    POST /api/age?method=M&to=70[&strip=10,30,50][&progression=1][&from=8][&set=KEY=VALUE...]
                 [&name=photo.jpg][&job=ID]
                                   body: the image file's bytes; answer: JSON report + result URLs.
                                   ``progression=1`` also ages the largest face at every progression
                                   age (``frames``: one picture of the crops side by side, for the
                                   page's slider; a labelled strip and a GIF to download); ``from``
                                   is the known age at the photo; ``set`` a method option.
    GET  /api/progress/ID          how far the upload sent with ``job=ID`` is (stage, done, total)
    GET  /api/result/TOKEN/FILE    result.jpg / frames.jpg / strip.jpg (the page's view), result.png /
                                   strip.png (lossless), progression.gif, all with provenance;
                                   ``?download=NAME`` as an attachment
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
from faceage.errors import FaceageError, ImageReadError, ImageTooLargeError, NoFaceError
from faceage.serve.worker import BusyError, WorkQueue
from faceage.version import __version__

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

PROGRESSION_STEP = 4  # years between the progression's ages (2, 6, ... 90 where the method reaches)
PROGRESSION_RANGE = (2, 90)
# Sent with every answer: nothing may be loaded from, or sent to, another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
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
    max_strip_ages    ages in one progression strip (``strip=``; ``progression=1`` has its own ages).
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
    """A method the page offers, with the target ages it can aim for, and the options the page shows
    (``Option.to_dict()`` of the registry's table, defaults as the server was started with)."""

    name: str
    summary: str
    min_age: float
    max_age: float
    options: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Upload:
    """An upload's request, checked before its body is read: what to render, the file's name for
    messages, its declared length, the page's progress id."""

    render: RenderRequest
    name: str
    length: int
    job: str | None = None


@dataclass(frozen=True)
class RenderRequest:
    """What one upload asks the backend for.

    method, target   the method's name and the target age.
    strip            ages of a labelled progression strip of the largest face (may be empty).
    progression      ages of the scrubbable progression of the largest face (may be empty).
    source_age       the known age at the photo (one number for every face, or per face), or None.
    options          method options as strings (``--set``), the server's defaults under them.
    """

    method: str
    target: float
    strip: tuple[float, ...] = ()
    progression: tuple[float, ...] = ()
    source_age: float | tuple[float | None, ...] | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Rendering:
    """What the worker made of one request.

    image, metadata         the aged photo and its provenance (PNG text chunks).
    report                  ``AgingResult.to_dict()``: method, target, warning, per-face numbers.
    strip, strip_metadata   the labelled progression strip and its provenance, or None.
    frames, frame_ages      the largest face's crop at the photo then at each progression age, side
                            by side (S x S*(n+1)), and those n ages; None / () without a progression.
    frames_metadata         their provenance (also the GIF's).
    gif_labels              one label per frame, for the GIF download.
    """

    image: np.ndarray
    metadata: Mapping[str, str]
    report: dict
    strip: np.ndarray | None = None
    strip_metadata: Mapping[str, str] | None = None
    frames: np.ndarray | None = None
    frame_ages: tuple[float, ...] = ()
    frames_metadata: Mapping[str, str] | None = None
    gif_labels: tuple[str, ...] = ()


class Headers(Protocol):
    """A request's headers, looked up case-insensitively (Starlette's ``Headers``, or a plain dict)."""

    def get(self, key: str, /) -> str | None: ...


# ``progress(stage, done, total)``, as ``faceage.methods.engine.Progress``
ProgressFn = Callable[[str, int, int], None]


class Backend(Protocol):
    """The models behind the page (``faceage.serve.backend.EngineBackend``)."""

    def methods(self) -> list[MethodChoice]: ...

    def render(self, rgb: np.ndarray, request: RenderRequest, progress: ProgressFn | None = None) -> Rendering: ...


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
    quick to encode) or ``NAME.png`` (the lossless download, encoded only when asked for); its
    animation (frames, labels, provenance) as ``progression.gif``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._images: OrderedDict[str, dict[str, tuple[np.ndarray, Mapping[str, str]]]] = OrderedDict()
        self._animations: dict[str, tuple[Sequence[np.ndarray], Sequence[str], Mapping[str, str]] | None] = {}
        self._files: dict[str, dict[str, bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._size = 0
        self._lock = threading.Lock()

    def put(
        self,
        images: Mapping[str, tuple[np.ndarray, Mapping[str, str]]],
        animation: tuple[Sequence[np.ndarray], Sequence[str], Mapping[str, str]] | None = None,
    ) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._images[token] = dict(images)
            self._animations[token] = animation
            self._files[token] = {}
            frames = animation[0] if animation is not None else []
            self._grow(token, sum(rgb.nbytes for rgb, _ in images.values()) + sum(f.nbytes for f in frames))
        return token

    def get(self, token: str, filename: str) -> bytes | None:
        """The encoded file (``result.jpg``, ``strip.png``, ``progression.gif``...), or None when
        unknown or dropped."""
        name, _, suffix = filename.partition(".")
        with self._lock:
            images = self._images.get(token)
            animation = self._animations.get(token)
            if images is None:
                return None
            if filename == "progression.gif" and animation is None:
                return None
            if filename != "progression.gif" and (name not in images or suffix not in ("jpg", "png")):
                return None
            data = self._files[token].get(filename)
        if data is None and animation is not None and filename == "progression.gif":
            data = encode_gif(*animation)
        elif data is None:
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
            del self._files[dropped], self._animations[dropped]
            self._size -= self._sizes.pop(dropped)


def encode_image(rgb: np.ndarray, metadata: Mapping[str, str] | None, suffix: str) -> bytes:
    """JPEG (quality 92) or PNG bytes written by ``faceage.imageio.save_image``, so the provenance is
    stored the one usual way."""
    from faceage.imageio import save_image

    with tempfile.TemporaryDirectory(prefix="faceage-serve-") as folder:
        path = save_image(Path(folder) / f"image.{suffix}", rgb, metadata=metadata, quality=92)
        return path.read_bytes()


def encode_gif(frames: Sequence[np.ndarray], labels: Sequence[str], metadata: Mapping[str, str]) -> bytes:
    """An animated GIF of ``frames`` with their labels and provenance (``faceage.outputs.progression.save_gif``)."""
    from faceage.outputs.progression import save_gif

    with tempfile.TemporaryDirectory(prefix="faceage-serve-") as folder:
        return save_gif(Path(folder) / "progression.gif", frames, labels, 400, metadata=metadata).read_bytes()


def progression_ages(low: float, high: float) -> tuple[float, ...]:
    """The ages of a scrubbable progression within a method's range: every ``PROGRESSION_STEP``
    years of ``PROGRESSION_RANGE`` that it reaches (its two ends when none is)."""
    first, last = PROGRESSION_RANGE
    ages = tuple(float(a) for a in range(first, last + 1, PROGRESSION_STEP) if low <= a <= high)
    return ages or (float(low), float(high))


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
        self._progress: OrderedDict[str, dict] = OrderedDict()
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
        site's page sent or that lacks a page token. (A request with two Host headers never gets
        here: h11 refuses it with 400.)"""
        allowed = self.config.allowed_hosts
        host = (headers.get("Host") or "").strip()
        name = _host_name(host)
        if allowed is not None and name not in allowed:
            raise HTTPError(403, "this app answers only requests addressed to this computer (Host header)")
        if verb in ("GET", "HEAD"):
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

    def page(self) -> bytes:
        """The page, with a fresh token for its uploads."""
        body = (STATIC_DIR / "index.html").read_bytes()
        return body.replace(_TOKEN_PLACEHOLDER, self.issue_token().encode("ascii"))

    def info(self) -> dict:
        methods = list(self._methods.values())
        return {
            "version": __version__,
            "methods": [
                {
                    "name": m.name,
                    "summary": m.summary,
                    "min_age": m.min_age,
                    "max_age": m.max_age,
                    "options": list(m.options),
                    "progression": list(progression_ages(m.min_age, m.max_age)),
                }
                for m in methods
            ],
            "default_method": methods[0].name,
            "max_upload_bytes": self.config.max_upload_bytes,
            "max_pixels": self.config.max_pixels,
            "max_strip_ages": self.config.max_strip_ages,
            "example": "/api/example.jpg",
        }

    # --- an upload, in the order its parts arrive ----------------------------------------------

    def upload_request(self, query: str, content_length: str | None) -> Upload:
        """Check an upload's parameters and declared length before its body is read: HTTPError 400
        (bad parameter), 411 (no length), 413 (larger than the limit, at once from the header)."""
        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=40)
        except ValueError:
            raise HTTPError(400, "too many query parameters") from None

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
        strip = [_number(t.strip(), "progression age") for t in (one("strip", "") or "").split(",") if t.strip()]
        if len(strip) > self.config.max_strip_ages:
            raise HTTPError(400, f"at most {self.config.max_strip_ages} progression ages, got {len(strip)}")
        given = [t.strip() for t in (one("from", "") or "").split(",")]
        known = [None if not t else _number(t, "age at the photo") for t in given] if any(given) else []
        try:
            check_target_age(target)
            for age in strip:
                check_target_age(age, "progression age")
            for given_age in known:
                if given_age is not None:
                    check_target_age(given_age, "age at the photo")
        except ValueError as error:
            raise HTTPError(400, str(error)) from None
        options = _options(params.get("set", []), method)
        progression = progression_ages(method.min_age, method.max_age) if one("progression") == "1" else ()
        job = one("job")
        if job is not None and not _TOKEN.match(job):
            raise HTTPError(400, "job must be 16-64 letters, digits, '-' or '_'")
        source_age = known[0] if len(known) == 1 else (tuple(known) or None)
        render = RenderRequest(method.name, target, tuple(strip), progression, source_age, options)
        filename = _clean_name(one("name"))
        limit = self.config.max_upload_bytes
        if content_length is None:
            raise HTTPError(411, "the upload has no Content-Length")
        if not _LENGTH.match(content_length):
            raise HTTPError(400, "bad Content-Length")
        length = int(content_length)
        if length > limit:
            raise HTTPError(
                413, f"{filename}: the file is {length / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB"
            )
        if length == 0:
            raise HTTPError(400, f"{filename}: no file was sent (the upload is empty)")
        if job is not None:
            self._set_progress(job, stage="uploading", done=0, total=0)
        return Upload(render, filename, length, job)

    def age_upload(self, upload: Upload, body: bytes, still_wanted: Callable[[], bool] | None = None) -> Response:
        """Decode the upload's ``body`` within the pixel budget, have the worker age it, answer.
        Blocks until the worker is done (call it off the event loop); raises ``HTTPError``."""
        from faceage.imageio import decode_image_bytes, image_header

        start = time.perf_counter()
        name = upload.name
        if len(body) != upload.length:
            raise HTTPError(400, f"{name}: the upload was cut short")
        try:
            with _image_errors():  # the header first: size and plausibility, nothing decoded yet
                width, height, _ = image_header(body, name=name, max_pixels=self.config.max_pixels)
            if self.queue.pending() > self.queue.max_waiting:
                raise HTTPError(503, "the server is busy with other photos; try again in a minute", _RETRY)
            pixels = width * height
            if not self.pixels.take(pixels, self.config.room_wait_s):
                raise HTTPError(503, "the server is busy decoding other photos; try again in a minute", _RETRY)
            try:
                with self._decoding, _image_errors():
                    rgb = decode_image_bytes(body, name=name, max_pixels=self.config.max_pixels)
                del body
                return self._age_decoded(rgb, upload, start, still_wanted)
            finally:
                self.pixels.give(pixels)
        except HTTPError as error:
            if upload.job is not None:
                self._set_progress(upload.job, stage="failed", done=0, total=0, error=public_message(str(error)))
            raise

    def _age_decoded(
        self, rgb: np.ndarray, upload: Upload, start: float, still_wanted: Callable[[], bool] | None
    ) -> Response:
        job_id = upload.job

        def progress(stage: str, done: int, total: int) -> None:
            if job_id is not None:
                self._set_progress(job_id, stage=stage, done=done, total=total)

        def job() -> tuple[Rendering, float, float]:
            if still_wanted is not None and not still_wanted():
                raise ClientGone()  # the client left while waiting: nobody would see the result
            began = time.perf_counter()
            progress("finding faces", 0, 0)
            rendering = self.backend.render(rgb, upload.render, progress)
            return rendering, began, time.perf_counter()

        try:
            ticket = self.queue.submit(job)
        except BusyError as error:
            shutting = "shutting" in str(error)
            message = "the server is shutting down" if shutting else "the server is busy with other photos"
            raise HTTPError(503, message + "; try again in a minute", _RETRY) from None
        if ticket.position > 1:
            progress("waiting", ticket.position - 1, ticket.position - 1)
        try:
            rendering, began, ended = ticket.future.result()
        except BusyError:
            raise HTTPError(503, "the server is shutting down; try again in a minute", _RETRY) from None
        except ClientGone:
            self.skipped_gone += 1
            raise HTTPError(499, "the client closed the connection before its turn") from None
        except NoFaceError as error:
            raise HTTPError(422, f"{upload.name}: {error}") from None
        except FaceageError as error:
            log.warning("request refused: %s", error)
            raise HTTPError(400, f"{upload.name}: {error}") from None
        progress("done", 1, 1)
        return self._answer(rendering, upload.render.method, ticket.position, start, began, ended)

    def _answer(
        self, rendering: Rendering, method: str, position: int, start: float, began: float, ended: float
    ) -> Response:
        report = rendering.report
        age_label = f"{report['target_age']:g}"
        images = {"result": (rendering.image, rendering.metadata)}
        if rendering.strip is not None:
            images["strip"] = (rendering.strip, rendering.strip_metadata or {})
        animation = None
        if rendering.frames is not None:
            images["frames"] = (rendering.frames, rendering.frames_metadata or {})
            side = rendering.frames.shape[0]
            crops = [rendering.frames[:, i * side : (i + 1) * side] for i in range(rendering.frames.shape[1] // side)]
            animation = (crops, list(rendering.gif_labels), rendering.frames_metadata or {})
        token = self.results.put(images, animation)
        base = f"/api/result/{token}"
        height, width = rendering.image.shape[:2]
        payload = {
            **report,
            "image": {"url": f"{base}/result.jpg", "width": width, "height": height},
            "download": f"{base}/result.png?download=faceage-{method}-{age_label}.png",
            "strip": None,
            "progression": None,
            "queue_position": position,
            "wait_ms": round((began - start) * 1000.0, 1),
            "run_ms": round((ended - began) * 1000.0, 1),
            "total_ms": round((time.perf_counter() - start) * 1000.0, 1),
        }
        if rendering.strip is not None:
            payload["strip"] = {
                "url": f"{base}/strip.jpg",
                "download": f"{base}/strip.png?download=faceage-{method}-progression.png",
            }
        if rendering.frames is not None:
            payload["progression"] = {
                "frames": f"{base}/frames.jpg",
                "frame_size": int(rendering.frames.shape[0]),
                "ages": list(rendering.frame_ages),
                "gif": f"{base}/progression.gif?download=faceage-{method}-progression.gif",
            }
        return json_response(200, payload)

    # --- what the page fetches afterwards ------------------------------------------------------

    def result_file(self, token: str, filename: str, download: str | None) -> Response:
        if not _TOKEN.match(token):
            raise HTTPError(404, "no such result")
        data = self.results.get(token, filename)
        if data is None:
            raise HTTPError(404, "this result has expired; age the photo again")
        headers = {}
        if download:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", download)[:80] or "faceage.png"
            headers["Content-Disposition"] = f'attachment; filename="{safe}"'
        kind = {"png": "image/png", "gif": "image/gif"}.get(filename.rpartition(".")[2], "image/jpeg")
        return Response(200, data, kind, headers)

    def progress(self, job: str) -> dict:
        """How far the upload with progress id ``job`` is: stage ("uploading", "waiting" (done: photos
        ahead), "finding faces", "faces" (done of total found are aged), "aging" (done of total ages),
        "done", "failed"), or HTTP 404 for an id no upload gave."""
        with self._tokens_lock:
            state = self._progress.get(job)
            if state is None:
                raise HTTPError(404, "no such upload")
            return dict(state)

    def _set_progress(self, job: str, **state: object) -> None:
        with self._tokens_lock:
            self._progress[job] = {**self._progress.get(job, {}), **state}
            self._progress.move_to_end(job)
            while len(self._progress) > _PAGE_TOKENS:
                self._progress.popitem(last=False)


_RETRY = {"Retry-After": "30"}
_LENGTH = re.compile(r"[0-9]{1,15}\Z")


def _options(values: list[str], method: MethodChoice) -> dict[str, str]:
    """``set=KEY=VALUE`` parameters: options of ``method`` (its loader checks the values)."""
    known = {option["name"] for option in method.options}
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise HTTPError(400, f"method {method.name!r} has no option {key[:40]!r} (its options: {allowed})")
        out[key] = value[:40]
    return out
