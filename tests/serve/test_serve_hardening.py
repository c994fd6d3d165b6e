"""The web app against hostile pages and clients: Host/Origin/token checks, HTTP framing, slow and
vanished clients, shutdown. Loopback sockets only."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from serve_helpers import page_token

from faceage.serve.commands import allowed_hosts


def raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request with exactly these headers (Host included), on a fresh connection."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        # header names are case-insensitive: compared here in one spelling
        return response.status, {k.title(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def test_a_cross_site_text_plain_post_runs_nothing(server_url, example_bytes):
    """What a form or fetch(no-cors) on any web site can send to the local app: refused before any work."""
    host = host_of(server_url)
    cases = [
        {"Host": host, "Origin": "http://evil.example", "Content-Type": "text/plain"},
        {"Host": host, "Content-Type": "text/plain"},  # no Origin (old browsers), no token
        {"Host": host, "Origin": "null", "X-Faceage-Token": page_token(server_url)},  # sandboxed frame
        {"Host": host, "Origin": "http://evil.example", "X-Faceage-Token": page_token(server_url)},
        {"Host": host, "Sec-Fetch-Site": "cross-site", "X-Faceage-Token": page_token(server_url)},
        {"Host": host, "X-Faceage-Token": "A" * 32},  # a guessed token
    ]
    for headers in cases:
        status, reply_headers, body = raw(server_url, "POST", "/api/age?to=70", headers, example_bytes)
        assert status == 403, (headers, body)
        assert reply_headers["X-Content-Type-Options"] == "nosniff" and json.loads(body)["error"]
    status, _, body = raw(
        server_url,
        "POST",
        "/api/age?to=70",
        {"Host": host, "Origin": server_url, "X-Faceage-Token": page_token(server_url)},
        example_bytes,
    )
    assert status == 200, body  # the page's own request


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", ""])
def test_a_foreign_host_name_is_refused(server_url, host):
    """DNS rebinding: a name the attacker controls, pointed at 127.0.0.1, reaches the port but not the app."""
    port = urllib.parse.urlsplit(server_url).port
    status, _, body = raw(server_url, "GET", "/api/info", {"Host": host.format(port=port)})
    assert status == 403 and "Host" in json.loads(body)["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}"])
def test_loopback_host_names_are_served(server_url, host):
    port = urllib.parse.urlsplit(server_url).port
    assert raw(server_url, "GET", "/api/info", {"Host": host.format(port=port)})[0] == 200


def test_each_page_load_gets_its_own_token(server_url):
    pages = [raw(server_url, "GET", "/", {"Host": host_of(server_url)})[2] for _ in range(2)]
    assert pages[0] != pages[1] and b'name="faceage-token" content="' in pages[0]
    assert b"{{faceage-token}}" not in pages[0]


def test_allowed_hosts_follow_the_listening_address():
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert "192.168.1.20" in allowed_hosts("192.168.1.20") and "evil.example" not in allowed_hosts("192.168.1.20")
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("::") is None


def huge_header_jpeg(side: int) -> bytes:
    """A few hundred bytes of JPEG whose frame header declares ``side`` x ``side`` pixels."""
    import io
    import struct

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 60)).save(buffer, "JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    start = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, start + 5, side, side)
    return bytes(data)


def test_a_tiny_upload_declaring_a_huge_image_is_refused_from_its_header(server_url):
    from serve_helpers import post_photo

    bomb = huge_header_jpeg(1900)  # 3.6 MP (under the test server's 4 MP) in ~630 bytes
    status, answer = post_photo(server_url, bomb, name="bomb.jpg")
    assert status == 400 and "declares 1900x1900 pixels but the file has only" in answer["error"]


def test_header_plausibility_lets_real_photos_through(astronaut):
    import io

    from PIL import Image

    from faceage.imageio import image_header

    flat = io.BytesIO()
    Image.new("RGB", (2000, 2000), (255, 255, 255)).save(flat, "JPEG", quality=1)  # the best case of JPEG
    assert image_header(flat.getvalue()) == (2000, 2000, "JPEG")
    png = io.BytesIO()
    Image.new("1", (3000, 3000), 0).save(png, "PNG", optimize=True)  # and of PNG (1-bit, all zero)
    assert image_header(png.getvalue())[:2] == (3000, 3000)


def test_decoded_pixels_in_flight_are_capped(example_bytes):
    """Uploads beyond the pixel budget wait for room instead of all being decoded at once."""
    import threading

    from serve_helpers import post_photo
    from test_serve_app import FakeBackend

    from faceage.serve.app import ServeApp, ServeConfig
    from faceage.serve.server import serve_in_thread

    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    # the example photo is 512 x 512: one fits the budget, a second does not while the first is held
    app = ServeApp(backend, ServeConfig(max_pixels=300_000, max_pixels_in_flight=300_000, room_wait_s=0.2))
    server, url = serve_in_thread(app)
    answers = []
    try:
        first = threading.Thread(target=lambda: answers.append(post_photo(url, example_bytes)))
        first.start()
        assert backend.started.acquire(timeout=30)  # decoded, on the worker, its pixels held
        status, answer = post_photo(url, example_bytes)
        assert status == 503 and "busy decoding" in answer["error"]
        assert app.pixels.used > 0
        gate.set()
        first.join(30)
        assert answers[0][0] == 200 and app.pixels.used == 0
        assert post_photo(url, example_bytes)[0] == 200  # room again
    finally:
        gate.set()
        server.stop()


# --- HTTP framing, slow and vanished clients, shutdown ---------------------------------------------


def connect(url: str):
    import socket

    parts = urllib.parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def read_all(sock) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def responses(data: bytes) -> list[tuple[int, dict, bytes]]:
    """The HTTP responses in ``data``, in order (status, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.title(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers.get("Content-Length", 0))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


@pytest.fixture
def fake_server():
    """A server with the fake backend (no models), its limits tightened for quick tests."""
    import threading

    from test_serve_app import FakeBackend

    from faceage.serve.app import ServeApp, ServeConfig
    from faceage.serve.server import HttpLimits, serve_in_thread

    gate = threading.Event()
    gate.set()
    backend = FakeBackend(gate=gate)
    app = ServeApp(backend, ServeConfig(max_waiting=8))
    server, url = serve_in_thread(app, limits=HttpLimits(head_s=1.0, keep_alive_s=1.0, body_grace_s=0.5))
    yield server, url, backend, gate
    gate.set()
    server.stop(timeout=30)


def test_a_chunked_body_is_never_read_as_a_next_request(fake_server):
    _, url, _, _ = fake_server
    smuggled = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock = connect(url)
    with sock:
        sock.sendall(
            b"POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            + f"X-Faceage-Token: {page_token(url)}\r\n\r\n".encode()
            + f"{len(smuggled):x}\r\n".encode()
            + smuggled
            + b"\r\n0\r\n\r\n"
        )
        answers = responses(read_all(sock))
    # h11 decodes the chunks, so the smuggled request is only body; the app wants a length: one
    # answer, then the connection is closed
    assert [status for status, _, _ in answers] == [411]
    assert answers[0][1]["Connection"] == "close" and "Content-Length" in json.loads(answers[0][2])["error"]


SMUGGLED = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        ["Content-Length: 10", "Content-Length: 11"],  # conflicting lengths
        ["Content-Length: abc"],
        ["Content-Length: -1"],
        ["Content-Length: \u00b2"],
        ["Content-Length: 1e3"],
        ["Content-Length: " + "9" * 40],
        ["Content-Length: 10", "Transfer-Encoding: chunked"],  # both: the classic smuggling pair
        ["X-Foo : bar", "Content-Length: 10"],  # a space before the colon (RFC 9112 5.1: 400)
        ["Content-Length : 10"],
    ],
)
def test_malformed_framing_gets_400_and_close(fake_server, head):
    """Whatever follows a malformed head is never read as a next request: one 400, then close."""
    _, url, _, _ = fake_server
    text = "POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{line}\r\n" for line in head)
    sock = connect(url)
    with sock:
        sock.sendall(text.encode("utf-8") + b"\r\n" + SMUGGLED)
        answers = responses(read_all(sock))
    assert [status for status, _, _ in answers] == [400], answers
    assert json.loads(answers[0][2])["error"] and answers[0][1]["Connection"] == "close"
    assert answers[0][1]["X-Content-Type-Options"] == "nosniff"


def test_headers_after_a_space_before_the_colon_are_not_ignored(fake_server):
    """The old server dropped the headers after ``X-Foo : bar`` (Content-Length with them), answered
    411, kept the connection and read the body as a second request."""
    _, url, _, _ = fake_server
    sock = connect(url)
    with sock:
        sock.sendall(
            b"POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Foo : bar\r\n"
            + f"Content-Length: {len(SMUGGLED)}\r\n\r\n".encode()
            + SMUGGLED
        )
        answers = responses(read_all(sock))
    assert [status for status, _, _ in answers] == [400]


def test_two_host_headers_are_refused(fake_server):
    _, url, _, _ = fake_server
    sock = connect(url)
    with sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        ((status, _, body),) = responses(read_all(sock))
    assert status == 400 and "Host" in json.loads(body)["error"]


def test_a_huge_declared_upload_gets_413_at_once_from_its_header(fake_server):
    """50 MB declared, no body sent: the answer comes from the header, not after a body deadline."""
    import time

    _, url, _, _ = fake_server
    sock = connect(url)
    with sock:
        sock.settimeout(10)
        start = time.monotonic()
        sock.sendall(
            f"POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Faceage-Token: {page_token(url)}\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data or len(responses(data)[0][2]) < int(responses(data)[0][1]["Content-Length"]):
            data += sock.recv(65536)
        took = time.monotonic() - start
    ((status, _, body),) = responses(data)
    assert status == 413 and "the limit is" in json.loads(body)["error"]
    assert took < 5  # the old server answered after its 60 s body deadline


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_a_stalled_upload_gets_408(fake_server, example_bytes):
    _, url, _, _ = fake_server
    sock = connect(url)
    with sock:
        sock.sendall(
            f"POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Faceage-Token: {page_token(url)}\r\n"
            f"Content-Length: {len(example_bytes)}\r\n\r\n".encode()
            + example_bytes[:1000]
        )
        answers = responses(read_all(sock))  # and then nothing more is sent
    assert [status for status, _, _ in answers] == [408]
    assert "stalled" in json.loads(answers[0][2])["error"]


def test_a_silent_connection_is_closed(fake_server):
    """Connected, nothing sent: closed after the head deadline instead of held forever."""
    _, url, _, _ = fake_server
    sock = connect(url)
    with sock:
        sock.settimeout(10)
        assert read_all(sock) == b""


def test_a_trickling_client_is_cut_off(fake_server):
    """One header byte at a time, each well within the socket timeout: the head's deadline ends it."""
    import time

    _, url, _, _ = fake_server
    sock = connect(url)
    closed = False
    with sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(100):  # up to 20 s of trickle; the server's head deadline is 1 s
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        if not closed:
            sock.settimeout(5)
            closed = read_all(sock) == b""
    assert closed


def test_the_library_errors_are_json_with_the_security_headers(fake_server):
    _, url, _, _ = fake_server
    for request_line in (b'GET /"quoted" HTTP/1.1 extra', b"BREW /pot HTTP/1.1", b"GET / HTTP/9.9"):
        sock = connect(url)
        with sock:
            sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            ((status, headers, body),) = responses(read_all(sock))
        assert status in (400, 404, 405, 501, 505), request_line
        assert json.loads(body)["error"]
        assert headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in headers


def test_a_photo_whose_client_left_is_not_aged(fake_server, example_bytes):
    import threading
    import time

    from serve_helpers import post_photo

    server, url, backend, gate = fake_server
    gate.clear()
    first = threading.Thread(target=post_photo, args=(url, example_bytes))
    first.start()
    assert backend.started.acquire(timeout=30)  # the worker is busy with the first photo
    sock = connect(url)
    sock.sendall(
        f"POST /api/age?to=70 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Faceage-Token: {page_token(url)}\r\n"
        f"Content-Length: {len(example_bytes)}\r\n\r\n".encode()
        + example_bytes
    )
    for _ in range(300):  # until the second photo waits in the queue
        if server.app.queue.pending() == 2:
            break
        time.sleep(0.01)
    sock.close()  # the user closed the tab
    time.sleep(0.5)  # the server's event loop notices the closed connection (a tab closed while waiting)
    gate.set()
    first.join(30)
    for _ in range(300):
        if server.app.queue.pending() == 0 and server.app.skipped_gone:
            break
        time.sleep(0.01)
    assert server.app.skipped_gone == 1
    assert not backend.started.acquire(timeout=0.5)  # the second photo was never rendered


def test_stop_answers_every_request_and_joins(example_bytes):
    """SIGTERM's path: waiting photos get 503 at once, the running one finishes with 200, then exit."""
    import threading

    from serve_helpers import post_photo
    from test_serve_app import FakeBackend

    from faceage.serve.app import ServeApp, ServeConfig
    from faceage.serve.server import serve_in_thread

    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    app = ServeApp(backend, ServeConfig(max_waiting=8))
    server, url = serve_in_thread(app)
    page_token(url)
    answers: list[int] = []
    clients = [threading.Thread(target=lambda: answers.append(post_photo(url, example_bytes)[0])) for _ in range(4)]
    clients[0].start()
    assert backend.started.acquire(timeout=30)
    for client in clients[1:]:
        client.start()
    for _ in range(500):
        if app.queue.pending() == 4:
            break
        threading.Event().wait(0.01)
    stopper = threading.Thread(target=lambda: answers.append(("stopped", server.stop(timeout=60))))
    stopper.start()
    for client in clients[1:]:
        client.join(30)
    assert sorted(a for a in answers if a != 200) == [503, 503, 503]  # refused with an answer, not dropped
    gate.set()
    clients[0].join(30)
    stopper.join(60)
    assert sorted(map(str, answers)) == sorted(map(str, [200, 503, 503, 503, ("stopped", True)]))


def test_a_link_from_another_site_still_opens_the_page(server_url):
    headers = {"Host": host_of(server_url), "Sec-Fetch-Site": "cross-site", "Referer": "http://example.org/"}
    status, _, body = raw(server_url, "GET", "/", headers)
    assert status == 200 and b"faceage-token" in body
