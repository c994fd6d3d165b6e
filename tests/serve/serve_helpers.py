"""HTTP helpers for the web app tests (tests cannot import conftest)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from faceage.serve.client import page_token


def request(
    url: str,
    data: bytes | None = None,
    method: str | None = None,
    timeout: float = 120,
    headers: dict[str, str] | None = None,
):
    """(status, headers, body bytes) of one request; HTTP errors are returned, not raised. A POST
    carries the page's token, as the page's own requests do, unless ``headers`` give one."""
    method = method or ("POST" if data is not None else "GET")
    headers = dict(headers or {})
    if method == "POST" and "X-Faceage-Token" not in headers:
        parts = urllib.parse.urlsplit(url)
        headers["X-Faceage-Token"] = page_token(f"{parts.scheme}://{parts.netloc}")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
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


def chromium_driver(chromium: str, driver_path: str, profile: Path, width: int = 1280, height: int = 1000):
    """A headless Chromium under Selenium that makes no background connections (this machine
    reaches no other server); an explicit driver path, so Selenium Manager (which would download
    one) never runs. Also used by docs/screenshot.py."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)
