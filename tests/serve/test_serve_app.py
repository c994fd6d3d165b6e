"""The web app over real HTTP: uploads aged with the real face models and a tiny random generator,
every bad upload answered with a 4xx JSON message, no server path or traceback ever sent."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import post_photo, request

import faceage
from faceage.assets import EXAMPLE_PHOTO
from faceage.outputs.provenance import read_provenance
from faceage.serve.app import MethodChoice, Rendering, ResultStore, ServeApp, ServeConfig, public_message
from faceage.serve.server import serve_in_thread

SERVER_SECRETS = ("Traceback", "site-packages", str(Path(faceage.__file__).resolve().parents[2]), "/tmp/")


def assert_no_leak(body: bytes, *paths: Path) -> None:
    text = body.decode("utf-8", "replace")
    for secret in (*SERVER_SECRETS, *map(str, paths)):
        assert secret not in text, f"the answer shows {secret!r}: {text[:300]}"


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_info_lists_the_served_method_and_the_limits(server_url):
    status, headers, body = request(f"{server_url}/api/info")
    info = json.loads(body)
    assert status == 200
    assert info["default_method"] == "ipcgan"
    assert info["methods"][0]["name"] == "ipcgan"
    assert "experimental" in info["methods"][0]["summary"]  # the page shows "name: summary"
    assert info["methods"][0]["min_age"] < info["methods"][0]["max_age"]
    assert info["max_upload_bytes"] == 1024 * 1024
    assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/static/page.js", "/static/page.css"])
def test_page_files_load_nothing_from_other_servers(server_url, path):
    status, headers, body = request(server_url + path)
    assert status == 200
    assert not re.search(rb"https?:|//[a-z0-9-]+\.[a-z]", body, re.I)
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_upload_ages_every_face_and_the_download_carries_provenance(server_url, example_bytes, tmp_path, tiny_weights):
    status, result = post_photo(server_url, example_bytes, to=62, name="example.jpg")
    assert status == 200, result
    assert result["method"] == "ipcgan" and result["target_age"] == 62
    face = result["faces"][0]
    assert 15 < face["source_age"] < 60
    assert face["reached_age"] is not None and face["identity"] is not None
    assert isinstance(face["same_person"], bool)
    assert result["queue_position"] >= 1 and result["strip"] is None

    status, headers, png = request(server_url + result["download"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'attachment; filename="faceage-ipcgan-62.png"'
    saved = tmp_path / "result.png"
    saved.write_bytes(png)
    original = Image.open(io.BytesIO(example_bytes))
    assert Image.open(saved).size == original.size == (result["image"]["width"], result["image"]["height"])
    provenance = read_provenance(saved)
    assert provenance["faceage:synthetic"] == "true"
    assert provenance["faceage:method"] == "ipcgan"
    assert provenance["faceage:target_age"] == "62"
    assert str(tiny_weights.parent) not in json.dumps(provenance)  # the weights' name only, no folder

    status, headers, shown = request(server_url + result["image"]["url"])  # what the page shows
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    (tmp_path / "shown.jpg").write_bytes(shown)
    assert Image.open(tmp_path / "shown.jpg").size == original.size
    assert read_provenance(tmp_path / "shown.jpg")["faceage:target_age"] == "62"


def test_progression_strip_shows_each_age(server_url, example_bytes, tmp_path):
    status, result = post_photo(server_url, example_bytes, to=40, strip="10, 40,70")
    assert status == 200, result
    status, _, png = request(server_url + result["strip"]["download"])
    assert status == 200 and png.startswith(b"\x89PNG")
    (tmp_path / "strip.png").write_bytes(png)
    strip = Image.open(tmp_path / "strip.png")
    assert strip.width > 2.5 * strip.height * 0.8  # three faces side by side, with label bars
    assert read_provenance(tmp_path / "strip.png")["faceage:target_age"] == "10, 40, 70"


def _bad_uploads(example_bytes: bytes) -> dict[str, tuple[bytes, int, str]]:
    flat = np.full((2500, 2000, 3), 128, np.uint8)  # 5 MP: over the 4 MP test limit, a tiny PNG
    gradient = np.linspace(0, 255, 256 * 256 * 3).reshape(256, 256, 3).astype(np.uint8)
    return {
        "text file": (b"name,age\nalice,34\n", 415, "notes.txt: not an image"),
        "truncated JPEG": (example_bytes[: len(example_bytes) // 3], 400, "truncated"),
        "empty file": (b"", 400, "empty"),
        "too many bytes": (b"\xff\xd8" + bytes(2 * 1024 * 1024), 413, "the limit is 1.0 MiB"),
        "too many pixels": (png_bytes(flat), 413, "exceeds the limit of 4.0 MP"),
        "no face": (png_bytes(gradient), 422, "no face"),
    }


@pytest.mark.parametrize(
    "case", ["text file", "truncated JPEG", "empty file", "too many bytes", "too many pixels", "no face"]
)
def test_bad_upload_gets_a_clear_message(server_url, example_bytes, tiny_weights, case):
    data, expected_status, expected_text = _bad_uploads(example_bytes)[case]
    query = "to=70&name=notes.txt" if case == "text file" else "to=70"
    status, headers, body = request(f"{server_url}/api/age?{query}", data=data, method="POST")
    assert status == expected_status, body
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert expected_text in message
    assert "\n" not in message
    assert_no_leak(body, tiny_weights)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("to=abc", "must be a number"),
        ("to=nan", "finite"),
        ("to=500", "between 0 and 120"),
        ("method=ipcgan", "target age is missing"),
        ("to=70&method=nope", "unknown method 'nope'"),
        ("to=70&strip=1,2,3,4,5,6,7,8,9", "at most 8"),
    ],
)
def test_bad_parameters_are_refused_before_any_work(server_url, example_bytes, query, expected):
    status, _, body = request(f"{server_url}/api/age?{query}", data=example_bytes)
    assert status == 400
    assert expected in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nothing", 404),
        ("GET", "/static/../app.py", 404),
        ("GET", "/static/app.py", 404),
        ("GET", "/api/result/AAAAAAAAAAAAAAAAAAAAAAAA/result.png", 404),
        ("GET", "/api/result/../../../etc/passwd", 404),
        ("GET", "/api/age", 405),
        ("POST", "/api/info", 405),
    ],
)
def test_other_requests_get_json_errors(server_url, method, path, status):
    got, headers, body = request(server_url + path, data=b"" if method == "POST" else None, method=method)
    assert got == status
    assert json.loads(body)["error"]
    assert_no_leak(body)


class FakeBackend:
    """Returns the photo unchanged; ``gate`` (when set) holds each render until released."""

    def __init__(self, fail: Exception | None = None, gate: threading.Event | None = None) -> None:
        self.fail, self.gate = fail, gate
        self.started = threading.Semaphore(0)

    def methods(self):
        return [MethodChoice("fake", "returns the photo", 0.0, 100.0)]

    def render(self, rgb, request, progress=None):
        self.started.release()
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        target = request.target
        report = {"method": request.method, "requested_age": target, "target_age": target, "warning": None, "faces": []}
        return Rendering(rgb, {"faceage:method": request.method}, report)


def test_unexpected_error_is_a_500_without_details(example_bytes, caplog):
    app = ServeApp(FakeBackend(fail=RuntimeError("boom in /srv/faceage/secret.py")), ServeConfig())
    server, url = serve_in_thread(app)
    try:
        status, _, body = request(f"{url}/api/age?to=30", data=example_bytes)
    finally:
        server.stop()
    assert status == 500
    assert b"secret" not in body and b"boom" not in body
    assert "internal error" in json.loads(body)["error"]
    assert "boom in /srv/faceage/secret.py" in caplog.text  # the details are in the server's log


def test_result_store_encodes_once_and_drops_the_oldest_beyond_its_budget():
    image = np.zeros((64, 64, 3), np.uint8)  # 12288 bytes
    store = ResultStore(max_bytes=30_000)
    first = store.put({"result": (image, {"faceage:method": "x"})})
    png = store.get(first, "result.png")
    assert png.startswith(b"\x89PNG") and store.get(first, "result.png") is png
    assert store.get(first, "strip.png") is None and store.get(first, "result.gif") is None
    assert store.get(first, "result") is None and store.get("unknown", "result.png") is None
    second = store.put({"result": (image, {})})
    third = store.put({"result": (image, {})})
    assert store.get(first, "result.jpg") is None  # dropped: the three would exceed 30 kB
    assert store.get(second, "result.jpg").startswith(b"\xff\xd8") and store.get(third, "result.png")


def test_messages_lose_anything_that_looks_like_a_path():
    assert public_message("weights missing: /home/me/w.safetensors") == "weights missing: <path>"
    assert public_message(r"cannot open C:\Users\me\w.pt") == "cannot open <path>"
    assert public_message("age 1/2 of image/png") == "age 1/2 of image/png"


def test_full_queue_answers_busy_and_then_serves_again(example_bytes):
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    app = ServeApp(backend, ServeConfig(max_waiting=1))
    server, url = serve_in_thread(app)
    answers: list[tuple[int, dict]] = []
    try:
        first = threading.Thread(target=lambda: answers.append(post_photo(url, example_bytes)))
        first.start()
        assert backend.started.acquire(timeout=30)  # the first request is on the worker
        second = threading.Thread(target=lambda: answers.append(post_photo(url, example_bytes)))
        second.start()
        for _ in range(300):  # until the second one waits in the queue
            if app.queue.pending() == 2:
                break
            threading.Event().wait(0.01)
        status, headers, body = request(f"{url}/api/age?to=70", data=example_bytes)
        assert status == 503
        assert "busy" in json.loads(body)["error"] and headers["Retry-After"]
        gate.set()
        first.join(30)
        second.join(30)
        assert sorted(status for status, _ in answers) == [200, 200]
        assert sorted(result["queue_position"] for _, result in answers) == [1, 2]
        assert post_photo(url, example_bytes)[0] == 200
    finally:
        gate.set()
        server.stop()


def test_a_burst_of_uploads_is_queued_not_reset(example_bytes):
    app = ServeApp(FakeBackend(), ServeConfig(max_waiting=32))
    server, url = serve_in_thread(app)
    barrier = threading.Barrier(20)
    answers: list[int] = []

    def client() -> None:
        barrier.wait()
        answers.append(post_photo(url, example_bytes)[0])

    try:
        threads = [threading.Thread(target=client) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        server.stop()
    assert answers == [200] * 20


def test_serve_command_starts_answers_and_stops_on_sigterm(tiny_weights):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceage.cli",
            "serve",
            "--port",
            "0",
            "--method",
            "ipcgan",
            "--weights",
            str(tiny_weights),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = None
        for line in process.stdout:  # "loading ...", "methods: ...", then the address
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if match:
                url = match.group(1)
                break
        assert url, process.stderr.read() if process.poll() is not None else "no address printed"
        status, _, body = request(f"{url}/api/info")
        assert status == 200 and json.loads(body)["methods"][0]["name"] == "ipcgan"
        # photos in flight when the service manager stops it: each gets an answer, the exit is clean
        answers: list[int] = []
        first = threading.Event()

        def upload() -> None:
            answers.append(post_photo(url, EXAMPLE_PHOTO.read_bytes(), strip="10,30,50,70")[0])
            first.set()

        clients = [threading.Thread(target=upload) for _ in range(6)]
        for client in clients:
            client.start()
        assert first.wait(120)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
        for client in clients:
            client.join(60)
        assert len(answers) == 6 and set(answers) <= {200, 503}, answers
        assert "terminate called" not in process.stderr.read()  # torch left mid-run by a daemon thread
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_serve_command_refuses_a_missing_weights_file(tmp_path):
    from click.testing import CliRunner

    from faceage.cli import cli

    result = CliRunner().invoke(
        cli, ["serve", "--method", "ipcgan", "--weights", str(tmp_path / "missing.safetensors")]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_the_progression_the_known_age_options_and_progress(server_url, example_bytes, tmp_path):
    """What the page asks for: every progression age of the largest face in one picture (its GIF and
    strip to download, with provenance), the known age at the photo, a method option, progress."""
    info = json.loads(request(f"{server_url}/api/info")[2])["methods"][0]
    assert info["progression"] == [float(a) for a in range(6, 79, 4)]  # ipcgan reaches 5-78
    assert {o["name"]: o["web"] for o in info["options"]} == {"batch": False}
    job = "job-" + "a" * 20
    status, r = post_photo(server_url, example_bytes, to=50, progression=1, job=job, **{"from": "8", "set": "batch=2"})
    assert status == 200, r
    face = r["faces"][0]
    assert face["given_age"] == 8 and face["source_age"] == 8 and face["source_from"] == "given"
    assert face["estimated_age"] > 15 and r["faces_found"] == r["faces_aged"] == 1 and r["faces_note"] is None
    progression = r["progression"]
    assert progression["ages"] == info["progression"]
    status, _, frames = request(server_url + progression["frames"])
    side = progression["frame_size"]
    assert status == 200 and Image.open(io.BytesIO(frames)).size == (side * (len(progression["ages"]) + 1), side)
    status, headers, gif = request(server_url + progression["gif"])
    assert status == 200 and headers["Content-Type"] == "image/gif" and "attachment" in headers["Content-Disposition"]
    (tmp_path / "p.gif").write_bytes(gif)
    assert Image.open(tmp_path / "p.gif").n_frames == len(progression["ages"]) + 1
    assert read_provenance(tmp_path / "p.gif")["faceage:source_ages"] == "8"
    assert request(server_url + r["strip"]["download"])[0] == 200
    assert json.loads(request(f"{server_url}/api/progress/{job}")[2])["stage"] == "done"
    assert request(f"{server_url}/api/progress/{'b' * 20}")[0] == 404
    for query, message in [
        ("to=50&set=truncation=1", "has no option 'truncation' (its options: batch)"),
        ("to=50&set=batch=0", "must be >= 1"),
        ("to=50&from=abc", "age at the photo must be a number"),
        ("to=50&from=200", "between 0 and 120"),
        ("to=50&job=x", "job must be"),
    ]:
        status, _, body = request(f"{server_url}/api/age?{query}", data=example_bytes)
        assert status == 400 and message in json.loads(body)["error"], (query, body)


def test_serve_refuses_a_bad_method_option_before_listening(capsys, tiny_weights):
    from cli_helpers import run_cli

    args = ("serve", "--port", "0", "--method", "ipcgan", "--weights", tiny_weights)
    code, _, err = run_cli(capsys, *args, "--set", "batch=0")
    assert code == 1 and "option 'batch'" in err and "must be >= 1" in err
    code, _, err = run_cli(capsys, *args, "--set", "batch")
    assert code == 2 and "expected KEY=VALUE" in err
