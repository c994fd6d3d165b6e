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
        return response.status, dict(response.getheaders()), response.read()
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
    status, _, body = raw(server_url, "POST", "/api/age?to=70",
                          {"Host": host, "Origin": server_url, "X-Faceage-Token": page_token(server_url)},
                          example_bytes)
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
        server.shutdown()
        server.server_close()
        app.close()
