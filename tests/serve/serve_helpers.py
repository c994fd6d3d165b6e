"""HTTP helpers for the web app tests (tests cannot import conftest)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


def request(url: str, data: bytes | None = None, method: str | None = None, timeout: float = 120):
    """(status, headers, body bytes) of one request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def post_photo(base: str, data: bytes, **params) -> tuple[int, dict]:
    """POST an upload to /api/age; (status, decoded JSON)."""
    query = urllib.parse.urlencode({"to": 70, **params})
    status, _, body = request(f"{base}/api/age?{query}", data=data)
    return status, json.loads(body)
