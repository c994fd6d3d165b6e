"""Benchmark faceage's own age regressor: CPU speed, and its error per decade on the test split.

    python benchmarks/age_regressor.py                        # shipped weights, data/faces128
    python benchmarks/age_regressor.py --weights RUN/age_regressor.safetensors --data DIR

Writes benchmarks/results/age_regressor.md (atomically) with:

1. Training run: command, data, epochs, images seen, selection, from the weights' JSON.
2. Test split of the prepared folder: MAE and mean signed error per decade, overall, balanced
   (mean over decades) and per source.
3. Speed on this CPU with ``--threads`` torch threads (default 2): ms per face for 128 px
   aligned faces at batch 1 and batch 64 (inference, the net resizes to its input size inside),
   and training images/s at batch 64 for 64 px and 128 px nets (forward + backward + AdamW +
   augmentation, synthetic pixels). The machine is shared: the load average is reported with
   the numbers.

This network is faceage's *training* signal; the independent judge of ages is
``faceage.eval.age_estimator`` (see benchmarks/evaluators.py for its MAE on the same test split).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _timing import median_ms

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO / "src" / "faceage" / "weights" / "age_regressor.safetensors"
DEFAULT_DATA = REPO / "data" / "faces128"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "age_regressor.md"


def inference_ms(model, batch: int, repeats: int) -> float:
    x = torch.rand(batch, 3, 128, 128) * 2 - 1

    def run():
        with torch.no_grad():
            model(x)

    return median_ms(run, repeats) / batch


def training_images_per_s(size: int, batch: int, steps: int) -> float:
    from faceage.models.age_regressor import AgeRegressor
    from faceage.training.age_trainer import AgeTrainOptions, make_optimizer, train_step

    opts = AgeTrainOptions(data="-", out="-", size=size, batch=batch)
    torch.manual_seed(0)
    model = AgeRegressor(opts.model_config()).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, opts)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    ages = rng.uniform(1, 90, batch).astype(np.float32)
    times = []
    for step in range(steps + 2):  # two warm-up steps
        t = time.perf_counter()
        train_step(model, optimizer, images, ages, opts, step, 10_000)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[2:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prepared folder; skipped if absent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=6, help="timed training steps per size (0 = skip)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from faceage.models.age_regressor import count_parameters
    from faceage.models.io import load_age_regressor, read_age_regressor_config
    from faceage.training.age_trainer import AgeTrainOptions, evaluate_weights, format_decade_report

    torch.set_num_threads(args.threads)
    model = load_age_regressor(args.weights)
    config, training = read_age_regressor_config(args.weights)
    lines = [
        "# Age regressor (faceage's own, the training signal; not the evaluator)",
        "",
        f"Command: `{' '.join(['python benchmarks/age_regressor.py', *(argv if argv is not None else sys.argv[1:])])}`  ",
        f"Weights: `{args.weights.relative_to(REPO) if args.weights.is_relative_to(REPO) else args.weights}` "
        f"({args.weights.stat().st_size / 2**20:.2f} MiB fp16, {count_parameters(model) / 1e6:.2f} M parameters, "
        f"input {config.input_size} px, bins {config.min_age}..{config.max_age})",
        "",
        "## Training run",
        "",
    ]
    if training:
        o = training.get("options", {})
        cmd = (
            f"faceage train age --data {o.get('data')} --out RUN --epochs {o.get('epochs')} --batch {o.get('batch')} "
            f"--size {o.get('size')} --lr {o.get('lr')} --seed {o.get('seed')} --balance-power {o.get('balance_power')} "
            f"--threads {o.get('threads')}"
        )
        lines += [
            f"- command: `{cmd}`",
            f"- data: `{training.get('data')}` (manifest sha256 {training.get('data_manifest_sha256', '?')[:16]}...), "
            f"{training['faces']['train']} train / {training['faces']['val']} val faces",
            f"- epochs: {o.get('epochs')} planned; selected epoch {training.get('epoch')} (step {training.get('step')}, "
            f"{training.get('images_seen')} images seen), {training.get('selected_on')}",
            f"- val at that epoch: MAE {training['val']['mae']:.2f}, balanced {training['val']['balanced_mae']:.2f}",
        ]
        if "wall_minutes" in training:
            lines.append(f"- wall time: {training['wall_minutes']:.1f} min on {training.get('hardware', 'CPU')}")
    else:
        lines.append("(no training metadata in the weights' JSON)")

    lines += ["", "## Test split", ""]
    if (args.data / "manifest.json").is_file():
        opts = AgeTrainOptions(data=str(args.data), out="-", size=config.input_size)
        test = evaluate_weights(args.weights, opts)
        lines += ["```", format_decade_report(test, f"{args.data.name}, split test (years)"), "```", ""]
        lines.append("Per source: " + ", ".join(f"{k} {v:.2f}" for k, v in test["sources"].items()))
    else:
        lines.append(f"(skipped: no prepared folder at {args.data})")

    lines += ["", "## Speed (CPU)", ""]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; load average at start {load:.1f} (shared machine)"
    )
    lines += ["", "| what | value |", "|---|---|"]
    lines.append(f"| inference, 128 px face, batch 1 | {inference_ms(model, 1, args.repeats):.2f} ms/face |")
    lines.append(
        f"| inference, 128 px faces, batch 64 | {inference_ms(model, 64, max(3, args.repeats // 4)):.2f} ms/face |"
    )
    if args.train_steps > 0:
        for size in (64, 128):
            rate = training_images_per_s(size, 64, args.train_steps)
            lines.append(f"| training at {size} px, batch 64 | {rate:.0f} images/s |")
    lines.append(f"\nLoad average at end: {os.getloadavg()[0]:.1f}")

    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    print(text)


if __name__ == "__main__":
    main()
