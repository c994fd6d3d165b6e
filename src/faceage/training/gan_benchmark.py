"""``faceage bench gan``: how good are the generator and each of its sub-generators?

For the full model and every (resolution, channel ratio) sub-generator, on the same latent codes
and the same noise:

- realism: Fréchet distance on MobileNetV2 features (:mod:`faceage.eval.fid`) between N generated
  faces and N real training faces box-downsampled to the same resolution;
- consistency with the full model (step S29 of *A StyleGAN-based face age editing method for mobile terminals*): mean MSE and PSNR between the sub-generator's
  output and the full output box-downsampled to its resolution;
- face-ness: share of generated faces in which the independent YuNet detector
  (``faceage.faces.detect``) finds a face;
- age spread: the independent age estimator's ages (``faceage.eval.age_estimator``) per decade, with the
  5th/95th percentiles, because covering children and the elderly is what faceage is for.

Faces below 128 px are upsampled (bicubic) to 128 px before detection and age estimation; those
models were not built for 32 px crops, so compare the small sub-models with each other, not
with the full model. Detection and age estimation are skipped with a note when their packages
(OpenCV, dlib) are missing on the machine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceage.atomic import write_json_atomic, write_text_atomic
from faceage.errors import FaceageError

FACE_SIZE = 128
DECADES = tuple(range(0, 90, 10))


def load_generator(path: Path):
    """G from a model folder (config.json + model.safetensors) or a training checkpoint's G_ema."""
    from faceage.models.io import load_model
    from faceage.models.stylegan2 import Generator

    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_model(path, expect=Generator).float(), f"model folder {path}"
    from faceage.training.checkpoint_format import latest_checkpoint, load_checkpoint
    from faceage.training.gan import STATE_FORMAT, GANConfig, load_module

    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FaceageError(f"{path} holds neither a model (config.json) nor a training checkpoint")
        path = found
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != STATE_FORMAT:
        raise FaceageError(f"{path} is not a GAN training checkpoint")
    G = Generator(GANConfig.from_dict(ckpt["config"]).generator_config())
    load_module(G, ckpt["G_ema"], f"{path} G_ema")
    return (
        G.eval(),
        f"checkpoint {path.name} (G_ema, step {ckpt['progress']['step']}, {ckpt['progress']['nimg'] / 1000:.1f} kimg)",
    )


def _to_uint8(img: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, r, r) in [-1, 1] -> list of (128, 128, 3) uint8 RGB (bicubic up when r < 128)."""
    x = img.float().clamp(-1, 1)
    if x.shape[-1] != FACE_SIZE:
        x = F.interpolate(
            x, size=(FACE_SIZE, FACE_SIZE), mode="bicubic", align_corners=False, antialias=x.shape[-1] > FACE_SIZE
        ).clamp(-1, 1)
    arr = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


def _age_summary(ages: np.ndarray) -> dict:
    if ages.size == 0:
        return {}
    hist = Counter(min(int(a // 10) * 10, DECADES[-1]) for a in ages)
    return {
        "n": int(ages.size),
        "mean": float(ages.mean()),
        "std": float(ages.std()),
        "p5": float(np.percentile(ages, 5)),
        "p95": float(np.percentile(ages, 95)),
        "min": float(ages.min()),
        "max": float(ages.max()),
        "decades": {f"{d}-{d + 9}" if d < DECADES[-1] else f"{d}+": hist.get(d, 0) / ages.size for d in DECADES},
    }


class _FaceJudges:
    """Lazily built detector and age estimator; each may be unavailable (reason kept)."""

    def __init__(self, echo: Callable[[str], None]):
        self.detector = self.ages = None
        self.notes: dict[str, str] = {}
        try:
            from faceage.faces.detect import FaceDetector

            self.detector = FaceDetector()
        except Exception as exc:  # noqa: BLE001 - optional on GPU machines without OpenCV models
            self.notes["detector"] = f"skipped: {type(exc).__name__}: {exc}"
            echo(f"[bench gan] face detector unavailable: {exc}")
        try:
            from faceage.eval.age_estimator import AgeEstimator

            self.ages = AgeEstimator()
        except Exception as exc:  # noqa: BLE001 - dlib is missing on the GPU machines
            self.notes["age"] = f"skipped: {type(exc).__name__}: {exc}"
            echo(f"[bench gan] age estimator unavailable: {exc}")

    def judge(self, faces: list[np.ndarray]) -> dict:
        out: dict = {}
        if not faces:
            return out
        if self.detector is not None:
            hits = sum(1 for f in faces if self.detector.detect(f))
            out["detect_rate"] = hits / len(faces)
        if self.ages is not None:
            out["age"] = _age_summary(np.asarray(self.ages.estimate_aligned(faces), np.float64))
        return out


def bench_gan(
    weights: Path,
    data: Path,
    n: int = 10000,
    n_faces: int = 500,
    resolutions=(32, 64, 128),
    ratios=(0.25, 0.5, 0.75, 1.0),
    split: str = "train",
    truncation: float = 1.0,
    batch: int = 250,
    device: str = "auto",
    seed: int = 0,
    cache: Path | None = None,
    out: Path = Path("benchmarks/results/gan.md"),
    echo: Callable[[str], None] = print,
) -> dict:
    """Run the benchmark; writes ``out`` (markdown) and ``out.with_suffix('.json')``; returns the report."""
    from faceage.eval.fid import FeatureExtractor, FeatureStats, cached_stats, fd_between, stats_of_images
    from faceage.training.dataset import ShardImageDataset, real_batches
    from faceage.training.losses import box_downsample
    from faceage.training.run import resolve_device

    t_start = time.monotonic()
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    G, source = load_generator(weights)
    G = G.to(dev).eval()
    R = G.cfg.resolution
    bad = [r for r in resolutions if r not in G.cfg.resolutions]
    if bad:
        raise FaceageError(f"resolutions {bad} not offered by this generator ({G.cfg.resolutions})")
    subs = [(R, 1.0)] + [
        (r, c) for r in sorted(resolutions, reverse=True) for c in sorted(ratios, reverse=True) if (r, c) != (R, 1.0)
    ]
    echo(f"[bench gan] {source}; {len(subs)} models; n={n}; device {dev}")

    with torch.random.fork_rng(devices=[]):
        extractor = FeatureExtractor(dev)
    dataset = ShardImageDataset(data, split=split, resolution=None, mirror=False)
    if dataset.stored_resolution < R:
        raise FaceageError(f"real faces are {dataset.stored_resolution} px, the generator makes {R} px")
    cache_dir = Path(cache) if cache is not None else Path(data) / ".fdstats"
    real_stats = {}
    n_real = min(n, dataset.n)
    for res in sorted({r for r, _ in subs}):
        opts = {"data": dataset.stats()["identity"], "split": split, "n": n_real, "resolution": res, "seed": 123}

        def compute(res: int = res) -> FeatureStats:
            batches = (b.float() / 127.5 - 1 for b in real_batches(dataset, n_real, batch))
            return stats_of_images(batches, extractor, resolution=res)

        real_stats[res] = cached_stats(cache_dir, opts, compute)
    echo(f"[bench gan] real statistics ready ({n_real} faces, {time.monotonic() - t_start:.0f} s)")

    stats = {s: FeatureStats() for s in subs}
    sq_err = {s: 0.0 for s in subs}
    faces: dict[tuple, list[np.ndarray]] = {s: [] for s in subs}
    gen = torch.Generator().manual_seed(seed)
    done = 0
    t_gen = time.monotonic()
    with torch.no_grad():
        while done < n:
            b = min(batch, n - done)
            z = torch.randn(b, G.cfg.z_dim, generator=gen).to(dev)
            ws = G.mapping(z, truncation=truncation)
            noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
            full = None
            for s in subs:
                torch.manual_seed(noise_seed)  # same noise maps for every sub-model of this batch
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    img = G.synthesis(ws, resolution=s[0], ratio=s[1], noise_mode="random").float()
                if full is None:
                    full = img
                else:
                    sq_err[s] += float((img - box_downsample(full, s[0])).square().mean(dim=(1, 2, 3)).sum())
                stats[s].add(extractor(img))
                if len(faces[s]) < n_faces:
                    faces[s] += _to_uint8(img[: n_faces - len(faces[s])])
            done += b
    echo(f"[bench gan] generated and embedded {n} x {len(subs)} faces in {time.monotonic() - t_gen:.0f} s")

    judges = _FaceJudges(echo) if n_faces > 0 else None
    rows = []
    for s in subs:
        res, ratio = s
        row = {
            "resolution": res,
            "ratio": ratio,
            "synthesis_params": G.count_parameters(res, ratio, include_mapping=False),
            "fd": fd_between(stats[s], real_stats[res]),
        }
        if s != (R, 1.0):
            mse = sq_err[s] / n
            row["cons_mse"] = mse
            row["cons_psnr_db"] = float(10 * np.log10(4.0 / max(mse, 1e-12)))  # peak-to-peak 2 -> 4
        if judges is not None:
            t0 = time.monotonic()
            row.update(judges.judge(faces[s]))
            row["judge_seconds"] = time.monotonic() - t0
        rows.append(row)
        echo(
            f"[bench gan] r{res} c{ratio:g}: FD {row['fd']:.2f}"
            + (f", cons MSE {row['cons_mse']:.4f}" if "cons_mse" in row else "")
            + (f", detect {row['detect_rate']:.2f}" if "detect_rate" in row else "")
            + (f", age p5-p95 {row['age']['p5']:.0f}-{row['age']['p95']:.0f}" if row.get("age") else "")
        )

    real_ages = dataset._ages[np.isfinite(dataset._ages)]
    report = {
        "benchmark": "gan",
        "weights": str(weights),
        "source": source,
        "generator_config": G.cfg.to_dict(),
        "data": dataset.stats(),
        "real_age": _age_summary(real_ages),
        "n": n,
        "n_real": n_real,
        "n_faces": n_faces,
        "truncation": truncation,
        "seed": seed,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "feature_net": "MobileNetV2 ImageNet (torchvision mobilenet_v2-b0353104), pooled 1280-d, 224 px bilinear",
        "notes": judges.notes
        if judges is not None
        else {"detector": "skipped: --n-faces 0", "age": "skipped: --n-faces 0"},
        "rows": rows,
        "seconds": time.monotonic() - t_start,
        "command": "faceage bench gan " + f"--weights {weights} --data {data} --n {n} --n-faces {n_faces}",
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    report["files"] = {"markdown": str(out), "json": str(json_path)}
    write_json_atomic(json_path, report)
    write_text_atomic(out, render_markdown(report))
    dataset.close()
    return report


def render_markdown(report: dict) -> str:
    lines = [
        "# Generator benchmark (`faceage bench gan`)",
        "",
        f"Weights: {report['source']}. Device: {report['device']}. Command: `{report['command']}`.",
        "",
        f"FD: Fréchet distance on {report['feature_net']} features, {report['n']} generated vs "
        f"{report['n_real']} real faces ({report['data']['split']} split) at the same resolution; lower is better, "
        "comparable across faceage runs only (not FID). Consistency: MSE / PSNR between each sub-model and the "
        "full model box-downsampled, same latent codes and noise. Detection and ages: independent "
        f"YuNet detector and age estimator on {report['n_faces']} faces per model (upsampled to 128 px).",
        "",
        "| resolution | ratio | synthesis params (M) | FD | cons MSE | PSNR (dB) | face found | age mean | age p5-p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        age = r.get("age") or {}
        cells = [
            str(r["resolution"]),
            f"{r['ratio']:g}",
            f"{r['synthesis_params'] / 1e6:.2f}",
            f"{r['fd']:.2f}",
            f"{r['cons_mse']:.4f}" if "cons_mse" in r else "—",
            f"{r['cons_psnr_db']:.1f}" if "cons_psnr_db" in r else "—",
            f"{r['detect_rate'] * 100:.1f} %" if "detect_rate" in r else "—",
            f"{age['mean']:.1f}" if age else "—",
            f"{age['p5']:.0f}-{age['p95']:.0f}" if age else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    decade_rows = [r for r in report["rows"] if r.get("age")]
    if decade_rows or report.get("real_age"):
        keys = list((decade_rows[0]["age"] if decade_rows else report["real_age"])["decades"])
        lines += [
            "",
            "Estimated age per decade (share of faces):",
            "",
            "| model | " + " | ".join(keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        if report.get("real_age"):
            lines.append(
                "| real faces (labels) | "
                + " | ".join(f"{report['real_age']['decades'][k] * 100:.1f}" for k in keys)
                + " |"
            )
        for r in decade_rows:
            lines.append(
                f"| r{r['resolution']} c{r['ratio']:g} | "
                + " | ".join(f"{r['age']['decades'][k] * 100:.1f}" for k in keys)
                + " |"
            )
    for what, note in report["notes"].items():
        lines += ["", f"Note ({what}): {note}"]
    return "\n".join(lines) + "\n"
