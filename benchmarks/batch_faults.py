"""A batch of small photos under faults injected at random, then a resume: is anything lost or done twice?

Run (as root, for the full disk; nice: it is long): ``nice -n 10 python benchmarks/batch_faults.py
[--photos 2000] [--faults 8] [--seed 0]`` -> benchmarks/results/batch_faults.md

``faceage age IN --to 60 -o OUT --no-eval`` runs in its own process again and again over the same
folders; each run but the last gets one fault, chosen at random:

- kill: SIGKILL at a random moment (after a random number of inputs finished), no chance to clean up;
- interrupt: SIGINT (Ctrl-C) at a random moment;
- full disk: OUT is a tmpfs; during the run a file fills it to the last byte (removed after the run);
- unreadable: 1 % of the inputs not yet done lose read permission for that run only (given back
  afterwards); the run is interrupted like the others, so that every fault meets work still to do.

Some inputs are bad for good: truncated copies, files without read permission, noise with no face,
and names with control characters and undecodable bytes (these are fine and must be aged). Then
runs without faults resume until one finishes; one more run must find everything done. The checks:

- every input is either aged, with a complete output (it decodes, its provenance names this input,
  its size and SHA-256 match the batch record), or listed as failed by the last run; never both;
- nothing twice: one batch-record entry and one summary row per aged face, no output of another
  name, no input aged again by the final run;
- the bad-for-good inputs are the ones listed as failed (and any photo in which no face is found).

The method is a small random IPCGAN generator (a real network, seeded, as the tests use): the
subject is the batch machinery, not the aging; its cost per photo is mostly the face pipeline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "batch_faults.md"
UTKFACE = REPO.parent / "shared" / "datasets" / "utkface" / "images"
RECORD = ".faceage-batch.jsonl"
FAULTS = ("kill", "interrupt", "full disk", "unreadable")
NO_DAC = "-dac_override,-dac_read_search"  # root without these obeys file permissions


def tiny_weights(folder: Path) -> Path:
    """A small random IPCGAN generator as a weights file (the recipe of tests/methods/conftest.py)."""
    import torch

    from faceage.models.io import save_flat
    from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator

    torch.manual_seed(0)
    generator = IPCGANGenerator(IPCGANConfig(g_channels=4, g_blocks=1, residual=False))
    with torch.no_grad():
        generator.encoder[0][0].weight[:, 3:] = torch.randn_like(generator.encoder[0][0].weight[:, 3:])
        generator.to_rgb.weight.mul_(30.0)
    return save_flat(generator.eval(), folder / "g.safetensors", {"grouping": "lifespan"})


def make_inputs(folder: Path, count: int, rng: random.Random) -> dict[str, list[Path]]:
    """``count`` inputs in ``folder`` (two subfolders), UTKFace crops, with the bad ones among them."""
    names = sorted(p.name for p in UTKFACE.iterdir() if p.suffix == ".jpg")
    picked = rng.sample(names, count)
    bad = max(count // 200, 2)  # of each bad kind
    kinds: dict[str, list[Path]] = {"good": [], "odd name": [], "truncated": [], "unreadable": [], "no face": []}
    for i, name in enumerate(picked):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        if i < bad:
            path = sub / f"truncated{i}.jpg"
            data = (UTKFACE / name).read_bytes()
            path.write_bytes(data[: len(data) // 2])
            kinds["truncated"].append(path)
        elif i < 2 * bad:
            path = sub / f"locked{i}.jpg"
            shutil.copy(UTKFACE / name, path)
            path.chmod(0)
            kinds["unreadable"].append(path)
        elif i < 3 * bad:
            path = sub / f"noise{i}.png"
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (96, 96, 3), np.uint8)).save(path)
            kinds["no face"].append(path)
        elif i < 4 * bad:
            odd = ["x\x01", "esc\x1b[31m", os.fsdecode(b"z\xff"), "back\\slash", "tab\t"][i % 5]
            path = sub / f"{odd}{i}.jpg"
            shutil.copy(UTKFACE / name, path)
            kinds["odd name"].append(path)
        else:
            path = sub / f"p{i:05d}.jpg"
            shutil.copy(UTKFACE / name, path)
            kinds["good"].append(path)
    return kinds


def record_lines(out: Path) -> int:
    try:
        with open(out / RECORD, "rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def recorded_inputs(out: Path) -> set[str]:
    """The inputs the batch record lists as finished."""
    done = set()
    try:
        with open(out / RECORD, encoding="utf-8") as handle:
            for line in handle:
                try:
                    done.add(json.loads(line)["input"])
                except (ValueError, KeyError):
                    continue  # a line torn by a kill
    except OSError:
        pass
    return done


def fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its disk is full, to the last byte; the filler's path."""
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size) == size:
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def run_once(command: list[str], env: dict, out: Path, fault: str | None, rng: random.Random, span: int) -> dict:
    """One ``faceage age`` run with ``fault`` injected after 1..``span`` inputs finished; what happened."""
    started = time.monotonic()
    before = record_lines(out)
    logs = out.parent / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "stdout", "w+b") as stdout_file, open(logs / "stderr", "w+b") as stderr_file:
        # Ctrl-C as in a terminal, even where this script itself ignores it (started in the background)
        process = subprocess.Popen(
            command,
            env=env,
            stdout=stdout_file,
            stderr=stderr_file,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        run = _inject(process, out, fault, rng, span, before)
        stdout_file.seek(0)
        stderr_file.seek(0)
        stdout, stderr = stdout_file.read(), stderr_file.read()
    return {
        "fault": fault or "none",
        "code": run,
        "finished": record_lines(out) - before,
        "seconds": time.monotonic() - started,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
    }


def _inject(process: subprocess.Popen, out: Path, fault: str | None, rng: random.Random, span: int, before: int) -> int:
    """Inject ``fault`` into the running ``process``; its exit code."""
    filler = None
    after = rng.randint(1, max(2, span))  # inputs to finish before the fault
    if fault is not None:
        while process.poll() is None and record_lines(out) < before + after:
            time.sleep(0.02)
        time.sleep(rng.random() * 0.5)  # somewhere inside the next input, not just between two
        if process.poll() is None:
            if fault == "kill":
                process.send_signal(signal.SIGKILL)
            elif fault in ("interrupt", "unreadable"):
                process.send_signal(signal.SIGINT)
            else:
                filler = fill(out)
    code = process.wait()
    if filler is not None:
        filler.unlink()
    return code


def check(out: Path, inputs: dict[str, list[Path]], final: dict, last: dict) -> dict:
    """Every input aged (complete output, its own) or listed as failed; nothing twice."""
    from faceage.checksum import sha256_file
    from faceage.errors import ImageReadError
    from faceage.imageio import load_image, read_metadata
    from faceage.methods.commands import Options, _source_id, collect_jobs

    everything = [p for paths in inputs.values() for p in paths]
    jobs = {str(job.source): job for job in collect_jobs((out.parent / "in",), out)}
    opts = Options((60.0,), False, False, False, False, False)
    failed = {f["path"] for f in final["failures"]}
    entries: dict[str, list[dict]] = {}
    with open(out / RECORD, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill: the format allows it
            entries.setdefault(entry["input"], []).append(entry)
    aged, problems = set(), []
    for path in everything:
        job = jobs[str(path)]
        (output,) = opts.expected(job)
        entry = (entries.get(str(path.resolve())) or [None])[-1]
        complete = False
        if output.is_file() and entry is not None:
            recorded = entry["outputs"].get(str(output.resolve()))
            try:
                meta = read_metadata(output)
            except ImageReadError:
                meta = {}
            complete = (
                recorded is not None
                and recorded["size"] == output.stat().st_size
                and recorded["sha256"] == sha256_file(output)
                and meta.get("faceage:source_id") == _source_id(path)
                and load_image(output).shape == load_image(path).shape
            )
        if complete:
            aged.add(str(path))
        if complete == (str(path) in failed):
            problems.append(f"{path.name!a}: {'aged and listed as failed' if complete else 'neither aged nor failed'}")
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    row_keys = Counter((row["file"], row["face"], row["target_age"]) for row in rows)
    expected_files = {str(opts.expected(jobs[p])[0].resolve()) for p in aged} | {
        str((out / name).resolve()) for name in ("summary.csv", RECORD)
    }
    present = [p for p in out.rglob("*") if p.is_file()]
    temps = [p for p in present if p.name.startswith(".") and p.name.endswith(".tmp")]
    strays = [p for p in present if str(p.resolve()) not in expected_files and p not in temps]
    bad_for_good = {str(p) for kind in ("truncated", "unreadable", "no face") for p in inputs[kind]}
    return {
        "inputs": len(everything),
        "aged": len(aged),
        "failed": len(failed),
        "problems": problems,
        "bad listed as failed": len(bad_for_good & failed),
        "bad": len(bad_for_good),
        "good failed": sorted(failed - bad_for_good),
        "recorded twice": sum(1 for e in entries.values() if len(e) > 1),
        "summary rows": len(rows),
        "summary files": len({row["file"] for row in rows}),
        "summary duplicates": sum(n - 1 for n in row_keys.values()),
        "stray files": [p.name for p in strays],
        "temp files left by kills": len(temps),
        "redone by the last run": len(last.get("results", [])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--faults", type=int, default=8, help="runs with a fault before the clean resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.work or Path(tempfile.mkdtemp(prefix="faceage-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    src, out = root / "in", root / "out"
    inputs = make_inputs(src, args.photos, rng)
    weights = tiny_weights(root)
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None
    if mounted:
        out.mkdir(exist_ok=True)
        size = max(8, args.photos // 20)  # MiB: room for every output (about 10 kB each) and the record
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}m", "tmpfs", str(out)]).returncode == 0
    command = [sys.executable, "-m", "faceage.cli", "age", str(src), "--to", "60", "-o", str(out)]
    command += ["--method", "ipcgan", "--weights", str(weights), "--no-eval"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            sys.exit("running as root without setpriv: file permissions would not hold")
        command = ["setpriv", f"--inh-caps={NO_DAC}", f"--bounding-set={NO_DAC}", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    faults = [f for f in FAULTS if mounted or f != "full disk"]
    span = max(2, args.photos // (args.faults + 2))  # the faults spread over the whole batch
    runs = []
    try:
        started = time.monotonic()
        for _ in range(args.faults):
            fault = rng.choice(faults)
            locked = []
            if fault == "unreadable":
                done = recorded_inputs(out)
                todo = [p for p in inputs["good"] if str(p.resolve()) not in done]
                locked = rng.sample(todo, min(len(todo), max(1, len(inputs["good"]) // 100)))
                for path in locked:
                    path.chmod(0)
            runs.append(run_once(command, env, out, fault, rng, span))
            for path in locked:
                path.chmod(0o644)
        for _ in range(5):  # resume until a run finishes without stopping
            runs.append(run_once([*command, "--json"], env, out, None, rng, span))
            if runs[-1]["code"] in (0, 1) and '"stopped": null' in runs[-1]["stdout"]:
                break
        final = json.loads(runs[-1]["stdout"])
        runs.append(run_once([*command, "--json"], env, out, None, rng, span))  # everything done?
        last = json.loads(runs[-1]["stdout"])
        total_seconds = time.monotonic() - started
        result = check(out, inputs, final, last)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(out)])
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    write_report(args, runs, result, total_seconds, mounted)
    print(args.results.read_text())
    ok = not result["problems"] and not result["stray files"] and not result["summary duplicates"]
    ok = ok and not result["recorded twice"] and not result["redone by the last run"]
    ok = ok and result["bad listed as failed"] == result["bad"] and result["summary files"] == result["aged"]
    sys.exit(0 if ok else 1)


def write_report(args, runs: list[dict], result: dict, seconds: float, mounted: bool) -> None:
    from faceage.atomic import write_text_atomic
    from faceage.machine import cpu_name

    def last_error(run: dict) -> str:
        lines = [line for line in run["stderr"].splitlines() if line.strip() and "aging:" not in line]
        text = lines[-1] if lines else ""
        return (text[:110] + "...") if len(text) > 110 else text

    lines = [
        "# Batch under injected faults, then a resume",
        "",
        f"Command: `nice -n 10 python benchmarks/batch_faults.py --photos {args.photos} --faults {args.faults} "
        f"--seed {args.seed}`; each run: `faceage age IN --to 60 -o OUT --method ipcgan --weights <small random "
        "generator> --no-eval` in its own process, as root without the capabilities that bypass file permissions.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores ({cpu_name()}), shared with other jobs; "
        f"Python {platform.python_version()}. OUT on a tmpfs: {'yes' if mounted else 'no (not root: no full-disk faults)'}.",
        f"Inputs: {result['inputs']} UTKFace crops (200x200 JPEG) in two subfolders, of which bad for good: "
        f"{result['bad']} (truncated, without read permission, noise without a face); plus names with control "
        "characters, an undecodable byte, a backslash and a tab, which must be aged.",
        f"Wall time of all runs: {seconds / 60:.1f} min.",
        "",
        "| run | fault | exit code | inputs finished | seconds | last error line |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for i, run in enumerate(runs, 1):
        error = last_error(run).replace("|", "\\|")
        lines.append(f"| {i} | {run['fault']} | {run['code']} | {run['finished']} | {run['seconds']:.0f} | {error} |")
    lines += [
        "",
        "| check | value |",
        "|---|---:|",
        f"| inputs | {result['inputs']} |",
        f"| aged, with a complete output of their own (decodes, provenance, size and SHA-256 as recorded) | {result['aged']} |",
        f"| listed as failed by the last resume | {result['failed']} |",
        f"| neither, or both | {len(result['problems'])} |",
        f"| bad-for-good inputs listed as failed | {result['bad listed as failed']} of {result['bad']} |",
        f"| other inputs listed as failed (no face found in the photo) | {len(result['good failed'])} |",
        f"| inputs recorded as finished more than once | {result['recorded twice']} |",
        f"| summary rows / inputs in the summary / duplicate rows | {result['summary rows']} / {result['summary files']} / {result['summary duplicates']} |",
        f"| files in OUT other than the aged inputs' outputs, summary and record | {len(result['stray files'])} |",
        f"| hidden temp files left by killed writes (never under an output name) | {result['temp files left by kills']} |",
        f"| inputs aged again by one more run after the resume | {result['redone by the last run']} |",
        "",
    ]
    if result["problems"]:
        lines += ["Problems:", "", *[f"- {p}" for p in result["problems"][:20]], ""]
    if result["good failed"]:
        lines += [
            "Photos of UTKFace without a detected face: " + ", ".join(Path(p).name for p in result["good failed"][:20]),
            "",
        ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.results, "\n".join(lines))


if __name__ == "__main__":
    main()
