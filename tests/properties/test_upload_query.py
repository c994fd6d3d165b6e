"""The web app's upload parameters (query string and Content-Length, read before any body): any text
gives a checked request or one HTTP error with a one-line message, nothing else. HTTP framing itself
is h11's (uvicorn); this is the part faceage parses."""

from __future__ import annotations

import math
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st

from faceage.methods.registry import METHODS
from faceage.serve.app import HTTPError, MethodChoice, ServeApp, ServeConfig

OPTIONS = tuple(option.to_dict() for option in METHODS["prototype"].options)


class NoRenderBackend:
    """The methods the page offers; never asked to render here (only the parameters are parsed)."""

    def methods(self):
        return [MethodChoice("prototype", "age prototypes", 0.0, 100.0, OPTIONS)]

    def render(self, rgb, request, progress=None):  # pragma: no cover - not reached by these tests
        raise AssertionError("the parameters alone are checked here")


APP = ServeApp(NoRenderBackend(), ServeConfig(max_upload_bytes=1 << 20))

KEYS = st.sampled_from(["to", "from", "strip", "set", "method", "job", "progression", "name", "x"])
VALUES = st.one_of(
    st.text(alphabet="0123456789.,-+eE _infINFnaN=&%;", max_size=20),
    st.sampled_from(["strength=1.5", "loop=off", "hair=maybe", "banana=1", "prototype", "1", "70"]),
    st.text(max_size=20),
)
QUERIES = st.one_of(
    st.lists(st.tuples(KEYS, VALUES), max_size=8).map(lambda kv: "&".join(f"{k}={quote(v)}" for k, v in kv)),
    st.text(max_size=60),
)
LENGTHS = st.one_of(st.none(), st.integers(-5, 3 << 20).map(str), st.text(max_size=12))


@given(QUERIES, LENGTHS)
@example("to=70", "1000")
@example("to=70&from=8,,35&set=strength%3D1.5", "10")
@example("to=nan", "10")
@example("to=70", None)
@example("to=70", "99999999999999999999999")
@example("to=70&set=strength", "10")
@example("&" * 50 + "to=70", "10")
def test_any_query_gives_a_checked_upload_or_one_http_error(query, length):
    try:
        upload = APP.upload_request(query, length)
    except HTTPError as error:
        assert error.status in (400, 411, 413)
        message = str(error)
        assert message and "\n" not in message and "Traceback" not in message
        return
    render = upload.render
    assert math.isfinite(render.target) and 0.0 <= render.target <= 120.0
    assert all(0.0 <= age <= 120.0 for age in render.strip)
    assert 0 <= upload.length <= 1 << 20
    assert set(render.options) <= {option["name"] for option in OPTIONS}
