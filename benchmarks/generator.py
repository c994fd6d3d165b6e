"""Generator speed per sub-model (step S4 of *A StyleGAN-based face age editing method for mobile terminals*: pick the (resolution, channel ratio) that meets a time budget).

For every (resolution, ratio) of a generator config: parameters the sub-generator reads (synthesis
only; the 8-layer mapping is shared and listed once), multiply-adds of one image (counted by
torch's FlopCounterMode on the actual ops: convolutions incl. blur, and matmuls), CPU ms per image
at batch 1 on 2 threads (warm-up, then median and min of N runs), and, when CUDA is available,
GPU ms per image at batch 256 under bf16 autocast. Untrained random weights: speed does not depend
on the values.

    .venv/bin/python benchmarks/generator.py                     # default 128 px config
    .venv/bin/python benchmarks/generator.py --also 8192:256 --also 4096:256   # + candidate configs

Writes benchmarks/results/generator.md atomically.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from faceage.atomic import write_text_atomic
from faceage.machine import cpu_name
from faceage.methods.budget import choose_submodel
from faceage.models.stylegan2 import Generator, GeneratorConfig
from faceage.training.gan import GANConfig

RESOLUTIONS = (32, 64, 128)
TARGET_FULL_MS = 60.0
TARGET_SMALLEST_MS = 10.0
OUT = Path(__file__).resolve().parent / "results" / "generator.md"


def count_macs(gen: Generator, resolution: int, ratio: float, device: str = "cpu") -> int:
    ws = torch.zeros(1, gen.num_ws, gen.cfg.w_dim, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        gen.synthesis(ws, resolution, ratio, noise_mode="const")
    return counter.get_total_flops() // 2


def time_ms(fn, warmup: int, reps: int, sync=None) -> list[float]:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def bench_config(cfg: GeneratorConfig, args, ratios, resolutions, log) -> list[dict]:
    torch.manual_seed(0)
    gen = Generator(cfg).eval().requires_grad_(False)
    rows = [
        {
            "resolution": res,
            "ratio": ratio,
            "params": gen.count_parameters(res, ratio, include_mapping=False),
            "macs": count_macs(gen, res, ratio),
            "cpu": [],
            "gpu": None,
        }
        for res in resolutions
        for ratio in ratios
    ]
    ws = torch.randn(1, gen.num_ws, cfg.w_dim)

    def call(row):
        return lambda: gen.synthesis(ws, row["resolution"], row["ratio"], noise_mode="const")

    with torch.inference_mode():
        for row in rows:
            time_ms(call(row), args.warmup, 0)
        # Round-robin: one timed call of every sub-model per round, so a burst of load from other
        # processes on the shared CPU spreads over all rows instead of spoiling one.
        for _ in range(args.reps):
            for row in rows:
                row["cpu"] += time_ms(call(row), 0, 1)
    for row in rows:
        row["cpu_med"], row["cpu_min"] = statistics.median(row["cpu"]), min(row["cpu"])
        log(
            f"  {row['resolution']:4d} px  ratio {row['ratio']:.2f}: {row['cpu_med']:8.2f} ms "
            f"(min {row['cpu_min']:.2f})  {row['macs'] / 1e6:9.1f} MMAC"
        )
    if torch.cuda.is_available() and not args.no_gpu:
        g = gen.to("cuda")
        for row in rows:
            ws_gpu = torch.randn(args.gpu_batch, g.num_ws, cfg.w_dim, device="cuda")

            def run(ws=ws_gpu, row=row):
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    g.synthesis(ws, row["resolution"], row["ratio"], noise_mode="const")

            t = time_ms(run, args.warmup, args.gpu_reps, sync=torch.cuda.synchronize)
            row["gpu"] = statistics.median(t) / args.gpu_batch
            log(f"  GPU {row['resolution']} px ratio {row['ratio']:.2f}: {row['gpu'] * 1e3:.1f} us/img")
        gen.to("cpu")
    return rows


def budget_rows(rows: list[dict], budgets: tuple[float, ...] = (5.0, 10.0, 30.0, 60.0, 120.0)) -> list[str]:
    """What step S4 picks on this machine's measured CPU times, per time budget."""
    latencies = {(r["resolution"], r["ratio"]): r["cpu_med"] for r in rows}
    out = []
    for budget in budgets:
        choice = choose_submodel(latencies, budget)
        out.append(
            f"| {budget:.0f} ms | {choice.resolution} px, ratio {choice.ratio} | {choice.latency_ms:.1f} | "
            f"{'yes' if choice.fits else 'no: the cheapest'} |"
        )
    return out


def fmt_table(rows: list[dict], gpu_batch: int) -> list[str]:
    gpu = any(r["gpu"] is not None for r in rows)
    head = "| resolution | ratio | params (synthesis) | MMAC / image | CPU ms / image (median) | CPU ms (min) |"
    sep = "|---:|---:|---:|---:|---:|---:|"
    if gpu:
        head += f" GPU ms / image (bs {gpu_batch}, bf16) |"
        sep += "---:|"
    lines = [head, sep]
    for r in rows:
        line = (
            f"| {r['resolution']} | {r['ratio']:.2f} | {r['params'] / 1e6:.3f} M | {r['macs'] / 1e6:.1f} | "
            f"{r['cpu_med']:.2f} | {r['cpu_min']:.2f} |"
        )
        if gpu:
            line += f" {r['gpu']:.4f} |" if r["gpu"] is not None else " – |"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15, help="timed CPU runs per sub-model (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    p.add_argument("--gpu-batch", type=int, default=256)
    p.add_argument("--gpu-reps", type=int, default=20)
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="BASE:MAX",
        help="also time the full 128 px model (and its smallest sub-model) with channel_base:channel_max",
    )
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_before = loadavg()
    t_start = time.time()
    cfg = GANConfig().generator_config()  # what `faceage train gan` trains and ships
    log(f"default config: {cfg}")
    rows = bench_config(cfg, args, Generator.RATIOS, RESOLUTIONS, log)
    mapping_params = sum(p.numel() for p in Generator(cfg).mapping_network.parameters())

    alt_rows = []
    for spec in args.also:
        base, cmax = (int(x) for x in spec.split(":"))
        alt = replace(cfg, channel_base=base, channel_max=cmax)
        log(f"candidate channel_base={base} channel_max={cmax}")
        for r in bench_config(alt, args, (1.0,), (128,), log):
            r["config"] = f"channel_base={base}, channel_max={cmax}"
            r["channels"] = ", ".join(f"{res}:{alt.channels(res)}" for res in (4,) + alt.resolutions)
            alt_rows.append(r)

    full = next(r for r in rows if r["resolution"] == cfg.resolution and r["ratio"] == 1.0)
    smallest = min(rows, key=lambda r: r["macs"])
    meets = [r for r in rows if r["resolution"] == cfg.resolution and r["cpu_med"] <= TARGET_FULL_MS]
    cmd = "python benchmarks/generator.py " + " ".join(argv if argv is not None else sys.argv[1:])
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.no_gpu else "none (CPU only)"
    lines = [
        "# Generator speed per sub-model",
        "",
        f"Command: `{cmd.strip()}` (from the repository root, venv python)",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, took {time.time() - t_start:.0f} s",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {args.threads} torch threads",
        f"- Load average (1/5/15 min) before: {load_before}; after: {loadavg()} (the CPU is shared; "
        "a load above the 2 cores inflates medians, the min is the less disturbed number)",
        f"- GPU: {gpu_name}",
        f"- Config: `{cfg}`",
        f"- CPU: batch 1, fp32, `torch.inference_mode`, noise_mode const, {args.warmup} warm-up + {args.reps} timed runs "
        "per sub-model, taken round-robin over all sub-models. "
        f"Mapping network ({mapping_params / 1e6:.2f} M params, {cfg.mapping_layers} FC layers, "
        "~2 MMAC) is shared by all sub-models and not included.",
        "",
        *fmt_table(rows, args.gpu_batch),
        "",
        "## Targets",
        "",
        f"- Full {cfg.resolution} px model <= {TARGET_FULL_MS:.0f} ms on CPU: "
        f"**{'met' if full['cpu_med'] <= TARGET_FULL_MS else 'NOT met'}** ({full['cpu_med']:.1f} ms median, "
        f"{full['cpu_min']:.1f} ms min, {full['macs'] / 1e9:.2f} GMAC).",
        f"- Smallest sub-model ({smallest['resolution']} px, ratio {smallest['ratio']}) <= {TARGET_SMALLEST_MS:.0f} ms: "
        f"**{'met' if smallest['cpu_med'] <= TARGET_SMALLEST_MS else 'NOT met'}** ({smallest['cpu_med']:.2f} ms).",
        "- Sub-models of the default config at full resolution within the full-model target: "
        + (", ".join(f"ratio {r['ratio']} ({r['cpu_med']:.1f} ms)" for r in meets) or "none"),
        "",
        "## Step S4 on these times: the sub-model chosen for a budget",
        "",
        "`faceage.methods.budget.choose_submodel` (the highest quality, pixels x channel ratio, that fits) "
        "on the CPU medians above:",
        "",
        "| budget | sub-model | its CPU ms | fits |",
        "|---:|---|---:|---|",
        *budget_rows(rows),
    ]
    if alt_rows:
        lines += [
            "",
            "## Candidate configs (full 128 px, ratio 1.0)",
            "",
            "| config | channels per resolution | params (synthesis) | MMAC / image | CPU ms (median) | CPU ms (min) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['config']} | {r['channels']} | {r['params'] / 1e6:.3f} M | {r['macs'] / 1e6:.1f} | "
            f"{r['cpu_med']:.2f} | {r['cpu_min']:.2f} |"
            for r in alt_rows
        ]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
