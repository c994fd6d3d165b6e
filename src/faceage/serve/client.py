"""Calling the local web app's API from a script (benchmarks, tests, automation): an upload needs the
token the page carries, as the page's own script sends it (``faceage.serve.app`` refuses POSTs
without one, so other web sites cannot upload)."""

from __future__ import annotations

import re
import urllib.request

_TOKENS: dict[str, str] = {}


def page_token(base: str, timeout: float = 60.0) -> str:
    """The upload token of the page served at ``base`` (``http://127.0.0.1:7860``), fetched once."""
    if base not in _TOKENS:
        with urllib.request.urlopen(base + "/", timeout=timeout) as response:
            page = response.read().decode("utf-8")
        found = re.search(r'<meta name="faceage-token" content="([^"]+)">', page)
        if found is None:
            raise ValueError(f"{base}/ is not a faceage page (no upload token in it)")
        _TOKENS[base] = found.group(1)
    return _TOKENS[base]
