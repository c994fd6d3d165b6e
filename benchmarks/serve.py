"""Load check of the web app: 20 photos sent at once to a running `faceage serve`.

Run: `python benchmarks/serve.py [--requests 20] [--single 5]` → benchmarks/results/serve.md
Starts `faceage serve` in its own process (the shipped IPCGAN weights when installed, else a tiny
random generator: the results say which), measures the single-request latency (median of
``--single`` requests one after another), then sends ``--requests`` uploads at the same moment.
Target (issue 6): no errors, and each request answered within 2 x single latency x its queue
position (the server reports the position: 1 = it started at once, n = n-1 requests were ahead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from faceage.assets import EXAMPLE_PHOTO
from faceage.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "serve.md"
EXAMPLE = EXAMPLE_PHOTO


_TOKENS: dict[str, str] = {}


def page_token(base: str) -> str:
    """The upload token the page carries (the server refuses POSTs without one, as the page's script sends)."""
    if base not in _TOKENS:
        with urllib.request.urlopen(base + "/", timeout=60) as response:
            page = response.read().decode("utf-8")
        _TOKENS[base] = re.search(r'<meta name="faceage-token" content="([^"]+)">', page).group(1)
    return _TOKENS[base]


def fetch(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {}
    if data is not None:
        base = re.match(r"https?://[^/]+", url).group(0)
        headers["X-Faceage-Token"] = page_token(base)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, json.dumps({"error": str(error)}).encode()


def age_photo(base: str, query: str, data: bytes) -> dict:
    """What the page does: upload, then load the result image. Client-side latency of both, the
    status, and the server's numbers."""
    start = time.perf_counter()
    status, body = fetch(f"{base}/api/age?{query}", data)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"error": body[:200].decode("utf-8", "replace")}
    if status == 200:
        status, image = fetch(base + answer["image"]["url"])
        if status != 200:
            answer["error"] = f"result image: {image[:200].decode('utf-8', 'replace')}"
    ms = (time.perf_counter() - start) * 1000.0
    return {"status": status, "ms": ms, **{k: answer.get(k) for k in ("queue_position", "wait_ms", "run_ms", "error")}}


def start_server(weights: Path | None, queue: int) -> tuple[subprocess.Popen, str]:
    # the IPCGAN method explicitly: the weights below (shipped or tiny) are IPCGAN generators, whatever the default
    command = [sys.executable, "-m", "faceage.cli", "serve", "--port", "0", "--method", "ipcgan", "--queue", str(queue)]
    if weights is not None:
        command += ["--weights", str(weights)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        match = re.search(r"(http://[\d.]+:\d+)/", line)
        if match:
            return process, match.group(1)
    raise SystemExit(f"faceage serve did not start (exit code {process.wait()})")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def tiny_weights(folder: Path) -> Path:
    from faceage.models.io import save_flat
    from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator

    return save_flat(
        IPCGANGenerator(IPCGANConfig(g_channels=4, g_blocks=1, residual=False)),
        folder / "tiny_ipcgan.safetensors",
        {"grouping": "lifespan"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="uploads sent at the same moment")
    parser.add_argument("--single", type=int, default=5, help="one-at-a-time requests for the single latency")
    parser.add_argument("--to", type=float, default=70.0, help="target age")
    parser.add_argument("--photo", type=Path, default=EXAMPLE, help="photo to upload")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from faceage.methods.registry import available_methods

    shipped = "ipcgan" in available_methods()
    with tempfile.TemporaryDirectory(prefix="faceage-bench-") as folder:
        weights = None if shipped else tiny_weights(Path(folder))
        weights_text = (
            "shipped IPCGAN weights (faceage/weights)"
            if shipped
            else "tiny random IPCGAN generator (g_channels=4, g_blocks=1: no shipped weights yet), "
            "so the time is the face models' (detect, landmarks, age, identity), not a trained generator's"
        )
        process, base = start_server(weights, queue=max(32, args.requests))
        try:
            query = f"to={args.to:g}&name={args.photo.name}"
            data = args.photo.read_bytes()
            for _ in range(2):  # warm-up: first-call allocations of every model
                age_photo(base, query, data)
            singles = [age_photo(base, query, data) for _ in range(args.single)]
            if any(r["status"] != 200 for r in singles):
                raise SystemExit(f"single requests failed: {singles}")
            single = statistics.median(r["ms"] for r in singles)

            barrier = threading.Barrier(args.requests)
            results: list[dict] = [{} for _ in range(args.requests)]

            def client(i: int) -> None:
                barrier.wait()
                results[i] = age_photo(base, query, data)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.requests)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(30)

    ok = [r for r in results if r["status"] == 200]
    errors = len(results) - len(ok)
    latencies = [r["ms"] for r in results]
    for r in results:
        r["bound"] = 2 * single * r["queue_position"] if r["queue_position"] else None
        r["within"] = r["status"] == 200 and r["bound"] is not None and r["ms"] <= r["bound"]
    within = sum(r["within"] for r in results)
    met = errors == 0 and within == len(results)

    from PIL import Image

    with Image.open(args.photo) as im:
        size = f"{im.width}x{im.height}"
    lines = [
        "# Web app under load",
        "",
        f"Command: `python benchmarks/serve.py --requests {args.requests} --single {args.single}` "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
        f"server: `faceage serve` in its own process, one model worker, queue {max(32, args.requests)}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; CPU only.",
        f"Weights: {weights_text}.",
        f"Request: POST /api/age?to={args.to:g} with {args.photo.name} ({size}, {len(data) / 1024:.0f} KiB, one face); "
        "then GET of the result image, as the page does; latency measured by the client from sending the "
        "upload to the last byte of the image (decode, queue, age, evaluate, JPEG encoding with provenance).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| single-request latency (median of {args.single}, one at a time) | {single:.0f} ms |",
        f"| {args.requests} concurrent: p50 | {percentile(latencies, 50):.0f} ms |",
        f"| {args.requests} concurrent: p90 | {percentile(latencies, 90):.0f} ms |",
        f"| {args.requests} concurrent: max | {max(latencies):.0f} ms |",
        f"| {args.requests} concurrent: all answered after | {wall:.1f} s |",
        f"| errors | {errors} of {args.requests} |",
        f"| within 2 x single x queue position | {within} of {args.requests} |",
        "",
        f"Target (no errors, each request within 2 x single latency x its queue position): "
        f"**{'met' if met else 'NOT met'}**.",
        "",
        "| queue position | status | latency ms | waited ms | ran ms | bound ms | within |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (r["queue_position"] or 10**9, r["ms"])):
        bound = f"{r['bound']:.0f}" if r["bound"] else "-"
        lines.append(
            f"| {r['queue_position'] or '-'} | {r['status']} | {r['ms']:.0f} | {r['wait_ms'] or 0:.0f} | "
            f"{r['run_ms'] or 0:.0f} | {bound} | {'yes' if r['within'] else 'NO: ' + str(r['error'] or '')} |"
        )
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
