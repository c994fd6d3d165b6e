"""Watching a GAN run: sample grids, the quick FD of the EMA generator, the metrics meter."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from faceage.atomic import atomic_write
from faceage.models.stylegan2 import Generator
from faceage.training.gan.config import GANConfig, resolve_amp
from faceage.training.gan.state import TrainState
from faceage.training.run import MetricsLog


@torch.no_grad()
def sample_grid(
    G: Generator, subs: list[tuple[int, float]], seeds: int, device: torch.device, seed: int = 2024
) -> np.ndarray:
    """(rows * R, seeds * R, 3) uint8: one row per sub-generator (full model first), fixed z, const
    noise; lower resolutions are shown nearest-upsampled to R."""
    R = G.cfg.resolution
    z = torch.randn(seeds, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = G.training
    G.eval()
    ws = G.mapping(z)
    rows = []
    for res, ratio in [(R, 1.0)] + [s for s in subs if s != (R, 1.0)]:
        img = G.synthesis(ws, resolution=res, ratio=ratio, noise_mode="const").float()
        img = torch.nn.functional.interpolate(img, size=(R, R), mode="nearest")
        rows.append(torch.cat(list(img), dim=2))  # (3, R, seeds * R)
    G.train(was_training)
    grid = torch.cat(rows, dim=1)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def save_png_atomic(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))


class FDEvaluator:
    """Quick FD of G_ema (full model and the smallest sub-generator) against cached real statistics."""

    def __init__(self, dataset, run_dir: Path, n: int, device: torch.device, cfg: GANConfig):
        from faceage.eval.fid import FeatureExtractor

        self.extractor = FeatureExtractor(device)
        self.dataset, self.n, self.device, self.cfg = dataset, n, device, cfg
        self.cache = run_dir / "fdstats"
        small = min(cfg.sub_models() or [(cfg.resolution, 1.0)], key=lambda s: (s[0], s[1]))
        self.subs = [(cfg.resolution, 1.0)] + ([small] if small != (cfg.resolution, 1.0) else [])

    def real_stats(self, res: int) -> dict:
        from faceage.eval.fid import cached_stats, stats_of_images
        from faceage.training.dataset import real_batches

        opts = {
            "data": self.dataset.stats()["identity"],
            "split": self.dataset.split,
            "n": self.n,
            "resolution": res,
            "seed": 123,
        }

        def compute():
            batches = (b.float() / 127.5 - 1 for b in real_batches(self.dataset, self.n, 250))
            return stats_of_images(batches, self.extractor, resolution=res)

        return cached_stats(self.cache, opts, compute)

    @torch.no_grad()
    def __call__(self, G: Generator) -> dict[str, float]:
        from faceage.eval.fid import FeatureStats, fd_between

        out = {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type if devices else "cuda"):
            torch.manual_seed(4242)
            for res, ratio in self.subs:
                stats = FeatureStats()
                done = 0
                while done < self.n:
                    b = min(250, self.n - done)
                    z = torch.randn(b, G.cfg.z_dim, device=self.device)
                    with torch.autocast(
                        self.device.type, dtype=torch.bfloat16, enabled=resolve_amp(self.cfg, self.device)
                    ):
                        img = G.synthesis(G.mapping(z), resolution=res, ratio=ratio)
                    stats.add(self.extractor(img.float()))
                    done += b
                out[f"fd_r{res}_c{ratio:g}"] = fd_between(stats, self.real_stats(res))
        return out


class Meter:
    """Averages step statistics on the device and writes one metrics line per ``every`` steps."""

    def __init__(self, state: TrainState, log_every: int, started: float, log: MetricsLog, echo: Callable[[str], None]):
        self.state, self.log_every, self.started, self.log, self.echo = state, log_every, started, log, echo
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.t0, self.nimg0 = time.monotonic(), self.state.nimg

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            if k in ("sub_res", "sub_ratio"):
                continue
            self.sums[k] = self.sums.get(k, 0) + v.detach().float()
            self.counts[k] = self.counts.get(k, 0) + 1
        st = self.state
        if st.step % self.log_every or not st.dist.is_main:
            return
        now = time.monotonic()
        rec = {k: float(self.sums[k]) / self.counts[k] for k in self.sums}  # the one host sync
        steps = max(self.counts.get("loss_d", 1), 1)
        kimg_min = (st.nimg - self.nimg0) / 1000 / max(now - self.t0, 1e-9) * 60
        mem = torch.cuda.max_memory_allocated(st.device) / 2**30 if st.device.type == "cuda" else 0.0
        self.log.write(
            kind="train",
            step=st.step,
            kimg=st.nimg / 1000,
            time_s=now - self.started,
            kimg_per_min=kimg_min,
            sec_per_step=(now - self.t0) / steps,
            ada_p=st.ada.p,
            ada_rt=st.ada.last_rt,
            peak_mem_gb=mem,
            **rec,
        )
        self.echo(
            f"[train gan] step {st.step} kimg {st.nimg / 1000:.1f} {kimg_min:.1f} kimg/min "
            f"D {rec.get('loss_d', 0):.3f} G {rec.get('loss_g_full', 0):.3f}/{rec.get('loss_g_sub', 0):.3f} "
            f"cons {rec.get('cons', 0):.4f} p {st.ada.p:.3f}"
        )
        self._reset()
