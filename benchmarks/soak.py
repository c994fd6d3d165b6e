"""Soak test of the web app: mixed traffic against one `faceage serve` for a long time.

Run: `nice -n 10 python benchmarks/soak.py [--minutes 30]` → benchmarks/results/soak.md

Client threads send, at random: uploads of 0.1-24 MP photos (the example photo resized, JPEG) and
fetch their result image; GETs of the page, its script, /api/info and progress; clients that send
half an upload and vanish; clients that stall mid-upload (the server must answer 408 and close);
heads with a space before a header's colon (400 and close). Reported: requests served, outcomes and
unexpected ones by kind, p50/p99 latency by kind, and the server's resident memory after the
warm-up and at the end (target: no growth beyond 10 %).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import socket
import statistics
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path

from faceage.atomic import write_text_atomic
from serve import EXAMPLE, fetch, page_token, percentile, start_server

RESULTS = Path(__file__).resolve().parent / "results" / "soak.md"
SIZES_MP = (0.1, 0.5, 1.0, 3.0, 6.0, 12.0, 24.0)


def photo_of(megapixels: float) -> bytes:
    """The example photo resized to about ``megapixels`` (4:3), as a JPEG (quality 88)."""
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    with Image.open(EXAMPLE) as im:
        face = im.convert("RGB").resize((height, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height), (205, 205, 210))
    canvas.paste(face, ((width - height) // 2, 0))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=88)
    return out.getvalue()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def raw_exchange(base: str, head: bytes, body: bytes = b"", then_wait: bool = True) -> bytes:
    """Send ``head`` + ``body`` on a fresh connection; everything the server sends until it closes
    (or nothing, when ``then_wait`` is False: the client vanishes)."""
    parts = urllib.parse.urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
    with sock:
        sock.sendall(head + body)
        if not then_wait:
            return b""
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return data
            if not chunk:
                return data
            data += chunk


def status_of(data: bytes) -> int:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


class Soak:
    def __init__(self, base: str, photos: dict[float, bytes], seed: int) -> None:
        self.base, self.photos = base, photos
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.outcomes: Counter = Counter()
        self.unexpected: Counter = Counter()

    def record(self, kind: str, ms: float, outcome: str, expected: bool) -> None:
        with self.lock:
            self.latency[kind].append(ms)
            self.outcomes[(kind, outcome)] += 1
            if not expected:
                self.unexpected[(kind, outcome)] += 1

    def upload(self) -> None:
        size = self.random.choice(SIZES_MP)
        start = time.perf_counter()
        status, body = fetch(
            f"{self.base}/api/age?to={self.random.choice((10, 40, 70))}&name=p{size}.jpg", self.photos[size]
        )
        if status == 200:
            import json

            image = json.loads(body)["image"]["url"]
            status, _ = fetch(self.base + image)
        ms = (time.perf_counter() - start) * 1000.0
        self.record(f"upload {size:g} MP", ms, str(status), status in (200, 503))  # 503: queue full, by design

    def get(self) -> None:
        path = self.random.choice(
            ("/", "/static/page.js", "/static/page.css", "/api/info", f"/api/progress/{'x' * 20}")
        )
        start = time.perf_counter()
        status, _ = fetch(self.base + path)
        expected = 404 if path.startswith("/api/progress") else 200
        self.record("get", (time.perf_counter() - start) * 1000.0, str(status), status == expected)

    def aborted(self) -> None:
        data = self.photos[1.0]
        head = (
            f"POST /api/age?to=50 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Faceage-Token: {page_token(self.base)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        raw_exchange(self.base, head, data[: len(data) // 2], then_wait=False)
        self.record("aborted upload", (time.perf_counter() - start) * 1000.0, "sent half, left", True)

    def stalled(self) -> None:
        data = self.photos[0.5]
        head = (
            f"POST /api/age?to=50 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Faceage-Token: {page_token(self.base)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        status = status_of(raw_exchange(self.base, head, data[:1000]))
        self.record("stalled upload", (time.perf_counter() - start) * 1000.0, str(status), status == 408)

    def malformed(self) -> None:
        head = b"POST /api/age?to=50 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Foo : bar\r\nContent-Length: 5\r\n\r\n"
        start = time.perf_counter()
        status = status_of(raw_exchange(self.base, head, b"GET /"))
        self.record("malformed head", (time.perf_counter() - start) * 1000.0, str(status), status == 400)

    def client(self, kinds: list, until: float, pause_s: float) -> None:
        """Requests of ``kinds`` one after another until ``until``, up to ``pause_s`` apart (a
        person's pace, and CPU left for the model worker and the machine's other jobs)."""
        while time.monotonic() < until:
            action = self.random.choice(kinds)
            try:
                action()
            except Exception as error:  # noqa: BLE001 - counted: the soak goes on
                self.record(action.__name__, 0.0, type(error).__name__, False)
            time.sleep(self.random.uniform(0.0, pause_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="minutes before the first memory reading")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    photos = {size: photo_of(size) for size in SIZES_MP}
    process, base = start_server(None, queue=32, method=None)
    load_before = os.getloadavg()[0]
    try:
        page_token(base)
        soak = Soak(base, photos, args.seed)
        start = time.monotonic()
        until = start + args.minutes * 60.0
        clients = [  # (what a client sends, the longest pause between its requests)
            ([soak.upload], 0.0),
            ([soak.upload, soak.get], 0.5),
            ([soak.get, soak.get, soak.get, soak.aborted, soak.malformed], 0.5),
            ([soak.stalled, soak.get], 0.5),
        ]
        threads = [
            threading.Thread(target=soak.client, args=(kinds, until, pause), daemon=True) for kinds, pause in clients
        ]
        for thread in threads:
            thread.start()
        time.sleep(min(args.warmup * 60.0, args.minutes * 30.0))
        memory = [(time.monotonic() - start, rss_kib(process.pid))]
        while time.monotonic() < until:
            time.sleep(min(30.0, max(0.0, until - time.monotonic())))
            memory.append((time.monotonic() - start, rss_kib(process.pid)))
        for thread in threads:
            thread.join(600)
        memory.append((time.monotonic() - start, rss_kib(process.pid)))
    finally:
        process.terminate()
        process.wait(120)

    first, last = memory[0][1], memory[-1][1]
    growth = (last - first) / first * 100.0
    peak = max(kib for _, kib in memory)
    served = sum(soak.outcomes.values())
    lines = [
        "# Web app soak test",
        "",
        f"Command: `nice -n 10 python benchmarks/soak.py --minutes {args.minutes:g} --seed {args.seed}`; server: "
        "`faceage serve` (default method, shipped weights; uvicorn + Starlette, one model worker, queue 32) in its "
        "own process.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; CPU only; "
        f"shared with other jobs (load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).",
        "Traffic: 4 client threads, each waiting for its answer (and up to 0.5 s more, but for one upload "
        "client) before the next request: uploads of "
        f"{', '.join(f'{s:g}' for s in SIZES_MP)} MP photos then their result image; GETs of the page, its "
        "files, /api/info and an unknown progress id; uploads cut off halfway (the client leaves); uploads "
        "stalled after 1000 bytes (expect 408); heads with a space before a colon (expect 400).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| requests | {served} |",
        f"| unexpected outcomes | {sum(soak.unexpected.values())} |",
        f"| resident memory after {args.warmup:g} min warm-up | {first / 1024:.0f} MiB |",
        f"| resident memory at the end | {last / 1024:.0f} MiB ({growth:+.1f} %) |",
        f"| resident memory peak | {peak / 1024:.0f} MiB |",
        "",
        f"Target (no growth beyond 10 %): **{'met' if growth <= 10.0 else 'NOT met'}**; "
        f"unexpected outcomes: **{sum(soak.unexpected.values())}**.",
        "",
        "| kind | outcome | count | expected |",
        "|---|---|---:|---|",
    ]
    for (kind, outcome), count in sorted(soak.outcomes.items()):
        expected = "no" if soak.unexpected.get((kind, outcome)) else "yes"
        lines.append(f"| {kind} | {outcome} | {count} | {expected} |")
    lines += ["", "| kind | requests | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for kind, values in sorted(soak.latency.items()):
        lines.append(f"| {kind} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 99):.0f} |")
    lines += ["", "| minute | resident MiB |", "|---:|---:|"]
    lines += [f"| {t / 60:.1f} | {kib / 1024:.0f} |" for t, kib in memory[:: max(1, len(memory) // 20)]]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
