"""Trainer for faceage's own age regressor (``faceage.models.age_regressor``), on CPU or GPU.

Data: a prepared folder of face shards (``faceage data prepare``, read with
``faceage.data.shards.ShardReader``). Each split is decoded once, resized to the training size with
the same antialiased bilinear resize the model applies to larger inputs, and kept in memory as a
uint8 array (37k faces at 64 px are ~450 MB), cached on disk in the run folder under a hash of the
shards, so epochs and resumed runs never decode JPEGs again.

Sampling: each epoch draws ``len(train)`` faces with replacement, a face's weight being
``1 / count(its decade) ** balance_power``. With power 0.5 a decade's share grows as the square root
of its size: children and the elderly are seen several times more often than their share of the
data, without repeating the ~170 faces over 90 so often that the net memorises them.

Augmentation (``faceage.training.augment.augment``, per sample): horizontal flip, a shift of up to
1/16 of the side, brightness, contrast and saturation jitter, each with probability ``augment_p``.
Mild on purpose: age cues (skin texture, wrinkles) must survive.

Optimisation: AdamW, linear warm-up then cosine decay to zero over all steps, loss
``age_loss`` (DLDL KL + L1 on the expected age). After each epoch the net is evaluated on the
val split; the epoch with the lowest *balanced* val MAE (mean of the per-decade MAEs, so the rare
decades count as much as the common ones) is exported as fp16 safetensors + config JSON, then
evaluated once on the test split.

Determinism and resume: every random draw comes from (seed, epoch) or (seed, step): the epoch's
sample order from a numpy generator seeded with (seed, epoch), augmentation from a torch generator
and dropout from the global torch seed, both set from (seed, step) before each step. A checkpoint
(``faceage.training.checkpoint_format``) holds the model, the optimiser, the step, the best result and
the history, so ``--resume`` continues mid-epoch to exactly the result of an uninterrupted run
(same thread count assumed: CPU kernels may sum in another order with other thread counts).

Run folder layout: ``options.json`` (the run's options), ``metrics.jsonl`` (one JSON line per
log/eval), ``ckpt-*.json`` + parts (latest two), ``cache-*.npz`` (decoded splits),
``age_regressor.safetensors`` + ``age_regressor.json`` (best on val), ``report.json`` (test).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceage.atomic import write_json_atomic
from faceage.data.balance import balanced_weights, decade_index
from faceage.errors import DatasetError
from faceage.models.age_regressor import (
    AgeRegressor,
    AgeRegressorConfig,
    age_loss,
    count_parameters,
)
from faceage.models.io import load_age_regressor, save_age_regressor
from faceage.training.augment import AugmentConfig, augment
from faceage.training.run import (
    METRICS_NAME,
    StopFlag,
    append_jsonl,
    check_run_folder,
    write_options,
)

WEIGHTS_NAME = "age_regressor.safetensors"
REPORT_NAME = "report.json"
DECADES = tuple(f"{10 * d}s" for d in range(9)) + ("90+",)
# Keys in the options that may differ when resuming (they do not change the result).
_RESUME_FREE = {"data", "out", "threads", "max_minutes", "log_every", "device"}


@dataclass
class AgeTrainOptions:
    """Everything that determines a training run; saved as ``options.json`` in the run folder."""

    data: str
    out: str
    epochs: int = 10
    batch: int = 128
    size: int = 64  # training resolution = the model's input_size
    lr: float = 2e-3  # AdamW peak, for batch 128
    weight_decay: float = 0.05  # AdamW decoupled decay; not applied to BN and biases
    warmup_frac: float = 0.03  # share of all steps spent warming up linearly from 0
    seed: int = 0
    balance_power: float = 0.5  # decade weight 1/count**power: 0 = natural, 1 = fully balanced
    l1_weight: float = 1.0  # DLDL-v2: KL + l1_weight * |E[age] - age|
    sigma_base: float = 1.0  # label distribution width sigma = base + slope * age (years)
    sigma_slope: float = 0.05
    augment_p: float = 0.5  # probability of each augmentation op per sample
    eval_batch: int = 256
    checkpoint_every: int = 200  # steps; also at the end of every epoch
    log_every: int = 50  # steps
    limit: int | None = None  # use only the first N faces of each split (tests, trials)
    threads: int = 2  # torch CPU threads
    device: str = "cpu"  # torch device of the network while training (evaluation runs on the CPU)
    max_minutes: float | None = None  # stop (after a checkpoint) when the wall clock passes this
    # Network shape (AgeRegressorConfig's defaults; tests use a narrow net).
    stem_channels: int = AgeRegressorConfig.stem_channels
    channels: tuple[int, ...] = field(default_factory=lambda: AgeRegressorConfig().channels)
    blocks: tuple[int, ...] = field(default_factory=lambda: AgeRegressorConfig().blocks)

    def __post_init__(self) -> None:
        if self.size not in (64, 128):
            raise ValueError(f"size must be 64 or 128, got {self.size}")
        if self.epochs < 1 or self.batch < 2:
            raise ValueError(f"need epochs >= 1 and batch >= 2, got {self.epochs}, {self.batch}")
        if not 0.0 <= self.balance_power <= 1.0:
            raise ValueError(f"balance_power must be in [0, 1], got {self.balance_power}")
        if not 0.0 <= self.augment_p <= 1.0:
            raise ValueError(f"augment_p must be in [0, 1], got {self.augment_p}")

    def to_dict(self) -> dict:
        """JSON types only (tuples as lists), so a saved copy compares equal to a fresh one."""
        return json.loads(json.dumps(asdict(self)))

    def model_config(self) -> AgeRegressorConfig:
        return AgeRegressorConfig(
            input_size=self.size, stem_channels=self.stem_channels, channels=self.channels, blocks=self.blocks
        )

    @classmethod
    def from_dict(cls, d: dict) -> AgeTrainOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --- data ------------------------------------------------------------------------------------------


@dataclass
class FaceArrays:
    """One split in memory: images (N, S, S, 3) uint8 RGB, ages (N,) float32, keys, sources."""

    images: np.ndarray
    ages: np.ndarray
    keys: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.ages)


def resize_uint8(images: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 with the model's antialiased bilinear resize."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(images[i : i + chunk]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def load_split(
    data: str | Path, split: str, size: int, cache_dir: str | Path | None = None, limit: int | None = None
) -> FaceArrays:
    """Decode a split of a prepared folder into memory at ``size`` px; cached in ``cache_dir``.

    The cache file name holds a hash of the split's shard checksums, the size and the limit, so a
    re-prepared folder is never read from a stale cache.
    """
    from faceage.data.shards import ShardReader

    reader = ShardReader(data, split=split)
    if not reader.shards:
        raise DatasetError(f"{data} has no shards of split '{split}'")
    ident = json.dumps([[s.name, s.sha256] for s in reader.shards] + [size, limit]).encode()
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"cache-{split}-{size}-{hashlib.sha256(ident).hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return FaceArrays(z["images"], z["ages"], list(z["keys"]), list(z["sources"]))
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    ages: list[float] = []
    keys: list[str] = []
    sources: list[str] = []
    side = None
    for key, image, labels in reader:
        if limit is not None and len(keys) >= limit:
            break
        assert isinstance(image, np.ndarray)  # the reader decodes
        side = side or image.shape[0]
        if image.shape != (side, side, 3) or side < size:
            raise DatasetError(
                f"face {key} in {data} is {image.shape[1]}x{image.shape[0]}; need {side}x{side}, >= {size} px"
            )
        pending.append(image)
        if len(pending) == 1024:  # resize as we go: the full-size split never sits in memory
            chunks.append(resize_uint8(np.stack(pending), size))
            pending = []
        ages.append(float(labels["age"]))
        keys.append(key)
        sources.append(str(labels.get("source", "")))
    if not keys:
        raise DatasetError(f"split '{split}' of {data} holds no faces")
    if pending:
        chunks.append(resize_uint8(np.stack(pending), size))
    arrays = FaceArrays(np.concatenate(chunks), np.asarray(ages, np.float32), keys, sources)
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, images=arrays.images, ages=arrays.ages, keys=np.asarray(keys), sources=np.asarray(sources))
        os.replace(tmp, cache)
    return arrays


def epoch_order(weights: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The faces drawn in ``epoch`` (with replacement, ``len(weights)`` of them); fixed by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 0xA6E])
    return rng.choice(len(weights), size=len(weights), replace=True, p=weights)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [-1, 1], channels_last (faster CPU convolutions)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


# --- metrics ---------------------------------------------------------------------------------------


def decade_mae(pred: np.ndarray, ages: np.ndarray) -> dict:
    """MAE overall, balanced (mean over the decades present) and per decade, with counts."""
    pred, ages = np.asarray(pred, np.float64), np.asarray(ages, np.float64)
    err = np.abs(pred - ages)
    dec = decade_index(ages)
    per = {}
    for d, name in enumerate(DECADES):
        m = dec == d
        if m.any():
            per[name] = {"n": int(m.sum()), "mae": float(err[m].mean()), "bias": float((pred[m] - ages[m]).mean())}
    return {
        "n": int(len(err)),
        "mae": float(err.mean()),
        "balanced_mae": float(np.mean([v["mae"] for v in per.values()])),
        "decades": per,
    }


def format_decade_report(metrics: dict, title: str = "") -> str:
    """A fixed-width table: one row per decade (n, MAE, mean signed error), then overall and balanced."""
    lines = [title] if title else []
    lines.append(f"{'decade':>7} {'n':>6} {'MAE':>6} {'bias':>6}")
    for name, v in metrics["decades"].items():
        lines.append(f"{name:>7} {v['n']:>6d} {v['mae']:>6.2f} {v['bias']:>+6.2f}")
    lines.append(f"{'all':>7} {metrics['n']:>6d} {metrics['mae']:>6.2f}")
    lines.append(f"{'balanced':>7} {'':>6} {metrics['balanced_mae']:>6.2f}")
    return "\n".join(lines)


@torch.no_grad()
def predict_ages(model: AgeRegressor, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Expected ages for (N, S, S, 3) uint8 faces, in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [
            model(to_tensor(images[i : i + batch]).to(device)).age.cpu().numpy() for i in range(0, len(images), batch)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32)


# --- optimisation ----------------------------------------------------------------------------------


def learning_rate(step: int, total_steps: int, peak: float, warmup_frac: float) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, then cosine decay to 0 at ``total_steps``."""
    warmup = max(1, int(round(warmup_frac * total_steps)))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: AgeRegressor, opts: AgeTrainOptions) -> torch.optim.AdamW:
    # No weight decay on BN parameters and biases (1-D tensors): decaying them only fights BN.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.999))


def _augment_config() -> AugmentConfig:
    # Mild: shift <= 1/16 of the side (4 px at 64), brightness +-0.1, contrast and saturation
    # x 2**(+-0.3) and 2**(+-0.5) at one standard deviation. No cutout: it hides age cues.
    return AugmentConfig(
        ops=("xflip", "translate", "brightness", "contrast", "saturation"),
        translate_frac=1 / 16,
        brightness_std=0.1,
        contrast_std=0.3,
        saturation_std=0.5,
    )


AUGMENT = _augment_config()


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**63 - 1)


def train_step(
    model: AgeRegressor,
    optimizer: torch.optim.Optimizer,
    images: np.ndarray,
    ages: np.ndarray,
    opts: AgeTrainOptions,
    step: int,
    total_steps: int,
) -> dict[str, float]:
    """One optimisation step on a uint8 batch; all randomness from (seed, step). Returns loss parts."""
    seed = step_seed(opts.seed, step)
    torch.manual_seed(seed)  # dropout
    generator = torch.Generator().manual_seed(seed)
    x = to_tensor(images)
    x = augment(x, opts.augment_p, AUGMENT, generator)
    lr = learning_rate(step, total_steps, opts.lr, opts.warmup_frac)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    device = next(model.parameters()).device
    out = model(x.to(device).contiguous(memory_format=torch.channels_last))
    loss, parts = age_loss(
        out, torch.from_numpy(ages).to(device), model.bin_ages, opts.l1_weight, opts.sigma_base, opts.sigma_slope
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), **parts, "lr": lr}


# --- the run ---------------------------------------------------------------------------------------


def train_age_regressor(
    opts: AgeTrainOptions, resume: bool = False, log: Callable[[str], None] = print, stop_after_steps: int | None = None
) -> dict:
    """Train (or resume) a run in ``opts.out``; return a summary with the test metrics.

    ``stop_after_steps`` ends this call after that many *global* steps, with a checkpoint, as an
    interruption would (for tests and time-boxed sessions); the result then has ``finished: False``.
    """
    from faceage.training.checkpoint_format import load_checkpoint, save_checkpoint

    t0 = time.perf_counter()
    stop = StopFlag(opts.max_minutes)
    torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(opts, out, resume, _RESUME_FREE)
    write_options(out, opts.to_dict())
    metrics_path = out / METRICS_NAME

    train = load_split(opts.data, "train", opts.size, out, opts.limit)
    val = load_split(opts.data, "val", opts.size, out, opts.limit)
    log(f"data: {len(train)} train, {len(val)} val faces at {opts.size} px ({time.perf_counter() - t0:.0f} s)")
    run_info = _run_info(opts, len(train), len(val))
    weights = balanced_weights(train.ages, opts.balance_power)
    steps_per_epoch = len(train) // opts.batch
    if steps_per_epoch < 1:
        raise DatasetError(f"{len(train)} training faces are fewer than one batch of {opts.batch}")
    total_steps = steps_per_epoch * opts.epochs

    torch.manual_seed(opts.seed)
    model = AgeRegressor(opts.model_config()).to(opts.device)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to's stub lacks it
    optimizer = make_optimizer(model, opts)
    step, best, history, seconds_before = 0, None, [], 0.0
    if resume:
        state = load_checkpoint(out)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best, history = int(state["step"]), state["best"], list(state["history"])
        seconds_before = float(state.get("seconds", 0.0))
        log(f"resumed at step {step} of {total_steps}")
    else:
        log(f"model: {count_parameters(model) / 1e6:.2f} M parameters; {total_steps} steps of {opts.batch}")

    def seconds() -> float:  # wall time of the whole run, over all resumed calls
        return seconds_before + time.perf_counter() - t0

    def checkpoint() -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best": best,
            "history": history,
            "options": opts.to_dict(),
            "seconds": seconds(),
        }
        save_checkpoint(out, step, state, keep=2)

    stopped = False
    last_log = time.perf_counter()
    with stop:
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            order = epoch_order(weights, opts.seed, epoch)
            for i in range(offset, steps_per_epoch):
                idx = np.sort(order[i * opts.batch : (i + 1) * opts.batch])  # sorted: faster gather
                parts = train_step(model, optimizer, train.images[idx], train.ages[idx], opts, step, total_steps)
                step += 1
                if step % opts.log_every == 0:
                    now = time.perf_counter()
                    rate = opts.log_every * opts.batch / max(now - last_log, 1e-9)
                    last_log = now
                    append_jsonl(metrics_path, {"step": step, "epoch": epoch, **parts, "images_per_s": rate})
                    log(
                        f"step {step}/{total_steps} epoch {epoch + 1} loss {parts['loss']:.3f} "
                        f"l1 {parts['l1']:.2f} lr {parts['lr']:.2e} {rate:.0f} img/s"
                    )
                over_time = bool(stop.reason())  # --max-minutes, or SIGTERM/SIGINT: stop with a checkpoint
                interrupted = stop_after_steps is not None and step >= stop_after_steps
                if step % steps_per_epoch == 0:
                    result = decade_mae(predict_ages(model, val.images, opts.eval_batch), val.ages)
                    record = {"epoch": epoch + 1, "step": step, "val": result}
                    history.append(record)
                    append_jsonl(metrics_path, record)
                    log(f"epoch {epoch + 1}: val MAE {result['mae']:.2f}, balanced {result['balanced_mae']:.2f}")
                    if best is None or result["balanced_mae"] < best["balanced_mae"]:
                        best = {
                            "epoch": epoch + 1,
                            "step": step,
                            "balanced_mae": result["balanced_mae"],
                            "mae": result["mae"],
                        }
                        save_age_regressor(model, out / WEIGHTS_NAME, _export_metadata(opts, run_info, best, result))
                    checkpoint()
                elif step % opts.checkpoint_every == 0 or over_time or interrupted:
                    checkpoint()
                if over_time or interrupted:
                    stopped = True
                    break
            if stopped:
                break

    summary: dict[str, Any] = {
        "finished": step >= total_steps,
        "step": step,
        "total_steps": total_steps,
        "images_seen": step * opts.batch,
        "best": best,
        "seconds": seconds(),
    }
    if not summary["finished"]:
        log(f"stopped at step {step} of {total_steps}; continue with --resume")
        return summary
    summary["test"] = evaluate_weights(out / WEIGHTS_NAME, opts, out)
    summary["history"] = history
    assert best is not None  # a finished run evaluated every epoch
    # Record the test result beside the weights too (the fp16 weights round-trip byte-identically).
    best_val = next(h["val"] for h in history if h["step"] == best["step"])
    metadata = _export_metadata(opts, run_info, best, best_val, summary["test"])
    metadata.update(
        {
            "run_steps": step,
            "run_images_seen": step * opts.batch,
            "wall_minutes": round(summary["seconds"] / 60, 1),
            "hardware": f"{'CPU' if opts.device == 'cpu' else opts.device}, {opts.threads} torch threads, torch {torch.__version__}",
        }
    )
    save_age_regressor(load_age_regressor(out / WEIGHTS_NAME), out / WEIGHTS_NAME, metadata)
    write_json_atomic(out / REPORT_NAME, summary)
    log(format_decade_report(summary["test"], f"test split, weights of epoch {best['epoch']}"))
    return summary


def _run_info(opts: AgeTrainOptions, n_train: int, n_val: int) -> dict:
    from faceage.data.shards import MANIFEST, sha256_file

    return {
        "data": str(opts.data),
        "data_manifest_sha256": sha256_file(Path(opts.data) / MANIFEST),
        "faces": {"train": n_train, "val": n_val},
        "options": opts.to_dict(),
    }


def _short_metrics(m: dict) -> dict:
    return {
        "mae": round(m["mae"], 3),
        "balanced_mae": round(m["balanced_mae"], 3),
        "n": m["n"],
        "decades": {k: round(v["mae"], 3) for k, v in m["decades"].items()},
    }


def _export_metadata(opts: AgeTrainOptions, run_info: dict, best: dict, val: dict, test: dict | None = None) -> dict:
    meta = {
        **run_info,
        "selected_on": "lowest balanced MAE on val",
        "epoch": best["epoch"],
        "step": best["step"],
        "images_seen": best["step"] * opts.batch,
        "val": _short_metrics(val),
    }
    if test is not None:
        meta["test"] = {**_short_metrics(test), "sources": {k: round(v, 3) for k, v in test.get("sources", {}).items()}}
    return meta


def evaluate_weights(
    weights: str | Path, opts: AgeTrainOptions, cache_dir: str | Path | None = None, split: str = "test"
) -> dict:
    """MAE per decade (and per source) of saved weights on one split of ``opts.data``."""
    model = load_age_regressor(weights)
    arrays = load_split(opts.data, split, model.cfg.input_size, cache_dir, opts.limit)
    pred = predict_ages(model, arrays.images, opts.eval_batch)
    result = decade_mae(pred, arrays.ages)
    sources = np.asarray(arrays.sources)
    result["sources"] = {
        s: decade_mae(pred[sources == s], arrays.ages[sources == s])["mae"] for s in sorted(set(arrays.sources))
    }
    result["split"] = split
    return result
