"""The student's sub-networks on this machine: size, speed in PyTorch and onnxruntime, fidelity.

    python benchmarks/student.py --weights runs/student/student.safetensors [--run runs/student]

For every (output resolution, channel ratio) sub-network: parameters it uses, the ONNX file's size
(``faceage export onnx --student``, each graph verified against torch), ms per aligned 256 px face
at batch 1 in PyTorch (2 threads) and in onnxruntime (CPU provider), and, from the training run's
last evaluation on its held-out pairs, PSNR and perceptual distance to the teacher (the prototype
method's output). Writes benchmarks/results/student.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms  # noqa: E402
from faceage.atomic import write_text_atomic  # noqa: E402
from faceage.machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    from faceage.export.onnx import export_student, load_student_weights, ort_session
    from faceage.models.io import read_flat_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=None, help="training run folder (its metrics.jsonl)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS / "student.md")
    args = parser.parse_args()

    torch.set_num_threads(2)
    net = load_student_weights(args.weights)
    _, meta = read_flat_config(args.weights, "Student")
    val: dict = {}
    if args.run is not None and (args.run / "metrics.jsonl").is_file():
        records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
        evaluated = [r for r in records if "val" in r]
        val = evaluated[-1]["val"] if evaluated else {}
    face = torch.rand(1, 3, 256, 256) * 2 - 1
    ages = (torch.tensor([30.0]), torch.tensor([70.0]))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for entry in export_student(net, folder, timing_repeats=args.repeats):
            r, c = entry.resolution, entry.ratio
            assert r is not None and c is not None
            with torch.inference_mode():
                torch_ms = median_ms(lambda r=r, c=c: net(face, *ages, r, c), args.repeats)
            session = ort_session(Path(folder) / entry.file, threads=2)
            feed = {"face": face.numpy(), "source": ages[0].numpy(), "target": ages[1].numpy()}
            ort_ms = median_ms(lambda session=session, feed=feed: session.run(None, feed), args.repeats)
            fidelity = val.get(f"{r}x{c:g}", {})
            rows.append((r, c, entry.bytes, torch_ms, ort_ms, entry.max_abs_diff, fidelity))
            print(f"{r} px x{c:g}: torch {torch_ms:.2f} ms, onnxruntime {ort_ms:.2f} ms, {entry.bytes / 2**20:.2f} MiB")
    lines = [
        "# Student: sub-networks",
        "",
        f"Command: `python benchmarks/student.py --weights {args.weights}"
        + (f" --run {args.run}`  " if args.run else "`  "),
        f"Machine: {cpu_name()}, 2 threads; batch 1, one aligned 256 px face in, median of {args.repeats} runs "
        "(the time includes the warp and colour head at the sub-network's resolution).  ",
        f"Weights: {meta.get('steps')} steps of {meta.get('batch')} on {meta.get('pairs_count')} teacher pairs "
        f"(teacher: {meta.get('teacher', {}).get('method')}); full network "
        f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, "
        f"{args.weights.stat().st_size / 2**20:.2f} MiB fp16.",
        "",
        "| resolution | channel ratio | ONNX MiB | PyTorch ms | onnxruntime ms | max abs onnx - torch | PSNR to teacher (dB) | perceptual to teacher |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, c, size, t_ms, o_ms, diff, fid in rows:
        lines.append(
            f"| {r} | {c:g} | {size / 2**20:.2f} | {t_ms:.2f} | {o_ms:.2f} | {diff:.1e} | "
            f"{fid.get('psnr', '-')} | {fid.get('perceptual', '-')} |"
        )
    if "unedited" in val:
        lines += [
            "",
            f"Edit nothing (the input itself) against the teacher: PSNR {val['unedited']['psnr']} dB, perceptual "
            f"{val['unedited']['perceptual']} (a student must beat this to have learned anything).",
        ]
    lines += ["", "Targets: full network <= 15 ms and the smallest <= 3 ms in onnxruntime; full model <= 8 MiB fp16."]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
