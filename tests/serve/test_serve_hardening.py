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
