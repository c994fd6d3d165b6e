"""The GAN training loop: start or resume, step, checkpoint, measure, stop cleanly."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from faceage.atomic import write_json_atomic
from faceage.training import distributed as ddp
from faceage.training.checkpoint_format import load_checkpoint, save_checkpoint
from faceage.training.gan.config import GANConfig
from faceage.training.gan.monitor import FDEvaluator, Meter, sample_grid, save_png_atomic
from faceage.training.gan.run_state import (
    compact_checkpoint,
    init_from_weights,
    load_training_state,
    merge_config,
    training_state_dict,
)
from faceage.training.gan.state import TrainState, create_state, seed_everything, setup_backends
from faceage.training.gan.steps import train_step
from faceage.training.run import (
    METRICS_NAME,
    OPTIONS_NAME,
    MetricsLog,
    StopFlag,
    prepare_resume,
    resolve_device,
    write_options,
)


@dataclass
class RunOptions:
    """How (not what) to train: stop conditions, I/O cadence, data loading."""

    data: Path
    out: Path
    kimg: float = 1000.0  # stop when this many thousand real images were shown (total, all ranks)
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    max_steps: int | None = None
    device: str = "auto"
    split: str = "train"
    workers: int = 6
    log_every: int = 50  # steps
    ckpt_kimg: float = 50.0
    ckpt_minutes: float = 4.0
    keep_ckpts: int = 2
    fd_kimg: float = 50.0  # quick FD every this many kimg (0 = off)
    fd_n: int = 2000
    grid_seeds: int = 8
    compact_to: Path | None = None  # also write a compact (fp16, no optimizer) checkpoint here at the end
    started: float = field(default_factory=time.monotonic)  # wall-clock origin of --max-minutes


def _stop_reason(state: TrainState, opts: RunOptions, flag: StopFlag) -> str:
    if flag.signalled:
        return flag.signalled
    if state.nimg >= opts.kimg * 1000:
        return f"reached {opts.kimg:g} kimg"
    if opts.max_steps is not None and state.step >= opts.max_steps:
        return f"reached {opts.max_steps} steps"
    return flag.reason()


def save_run_checkpoint(state: TrainState, opts: RunOptions, data_stats: dict, log: MetricsLog) -> Path | None:
    """Checkpoint + sample grid (rank 0 writes; all ranks take part in gathering RNG states)."""
    sd = training_state_dict(state, data_stats)
    path = None
    if state.dist.is_main:
        t0 = time.monotonic()
        path = save_checkpoint(opts.out, state.step, sd, keep=opts.keep_ckpts)
        grid = sample_grid(state.G_ema, state.cfg.sub_models(), opts.grid_seeds, state.device)
        save_png_atomic(opts.out / f"samples-{state.nimg // 1000:06d}kimg.png", grid)
        log.write(
            kind="checkpoint", step=state.step, kimg=state.nimg / 1000, path=path.name, seconds=time.monotonic() - t0
        )
    ddp.barrier()
    return path


def _start(cfg: GANConfig, opts: RunOptions, resume: str | None, explicit: dict) -> tuple[TrainState, dict]:
    """Process group, device, config (from the checkpoint when resuming) and the filled state."""
    world = ddp.env_world_size()
    device = resolve_device(opts.device, int(os.environ.get("LOCAL_RANK", 0)))
    dist = ddp.init_from_env(device.type)
    mode, resume_path = prepare_resume(resume, opts.out)
    ckpt = None
    if mode == "checkpoint":
        assert resume_path is not None  # prepare_resume names a path for every mode but "fresh"
        ckpt = load_checkpoint(resume_path)
        cfg, changed = merge_config(ckpt["config"], explicit)
        if changed:
            warnings.warn(f"overriding checkpoint settings {changed}: the resume is not exact", stacklevel=3)
        if ckpt.get("world_size", 1) != world:
            warnings.warn(
                f"checkpoint was written by {ckpt.get('world_size')} processes, now {world}: "
                "data order and random streams change (not an exact resume)",
                stacklevel=3,
            )
    setup_backends(cfg, device)
    seed_everything(cfg.seed, dist.rank)
    state = create_state(cfg, device, dist)
    notes: list[str] = []
    if ckpt is not None:
        notes = load_training_state(state, ckpt)
    elif mode == "weights":
        assert resume_path is not None
        notes = init_from_weights(state, resume_path)
    for n in notes:
        warnings.warn(n, stacklevel=3)
    for m in (state.G, state.D, state.G_ema):
        ddp.broadcast_module(m)
    return state, {"mode": mode, "path": str(resume_path) if resume_path else None, "notes": notes}


def _next_multiple(nimg: int, kimg: float) -> float:
    step = int(kimg * 1000)
    return (nimg // step + 1) * step if step > 0 else math.inf


def train(
    cfg: GANConfig,
    opts: RunOptions,
    resume: str | None = None,
    explicit: dict | None = None,
    echo: Callable[[str], None] = print,
) -> Path | None:
    """Run (or continue) a training run; returns the last checkpoint's index path (rank 0).

    ``explicit``: config fields the user set on the command line; on resume they override the
    checkpoint's values (with a warning, since the resume is then not exact), all others come
    from the checkpoint. Stops at ``opts.kimg``, ``opts.max_steps``, ``opts.max_minutes`` or SIGTERM/
    SIGINT, always with a final checkpoint.
    """
    from faceage.training.dataset import ShardImageDataset, make_loader, to_float_images

    opts.out = Path(opts.out)
    state, resumed = _start(cfg, opts, resume, explicit or {})
    cfg, dist, device = state.cfg, state.dist, state.device
    if dist.is_main:
        opts.out.mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    dataset = ShardImageDataset(opts.data, split=opts.split, resolution=cfg.resolution, mirror=cfg.mirror)
    data_stats = dataset.stats()
    log = MetricsLog(opts.out / METRICS_NAME, dist.is_main)
    if dist.is_main:
        launch = {
            "config": cfg.to_dict(),
            "resume": resumed,
            "start_step": state.step,
            "start_kimg": state.nimg / 1000,
            "run": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k != "started"},
            "world_size": dist.world_size,
            "torch": torch.__version__,
            "data": data_stats,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        }
        if not (opts.out / OPTIONS_NAME).exists():
            write_options(opts.out, launch)
        write_json_atomic(opts.out / f"launch-{state.step:09d}.json", launch, default=str)
        echo(
            f"[train gan] {resumed['mode']} at step {state.step} ({state.nimg / 1000:.1f} kimg); {data_stats['images']} "
            f"faces x{2 if cfg.mirror else 1}; batch {cfg.batch} x {dist.world_size}; device {launch['device']}; "
            f"amp {'bf16' if state.amp_enabled else 'off'}"
        )
    fd_eval = None
    if opts.fd_kimg > 0 and dist.is_main:
        try:
            with torch.random.fork_rng(devices=[]):  # building MobileNetV2 draws init weights
                fd_eval = FDEvaluator(dataset, opts.out, opts.fd_n, device, cfg)
        except Exception as exc:  # noqa: BLE001 - a missing metric net must not stop training
            warnings.warn(f"quick FD disabled: {exc}", stacklevel=2)

    batches = iter(
        make_loader(
            dataset,
            cfg.batch,
            dist.rank,
            dist.world_size,
            cfg.seed,
            state.step,
            opts.workers,
            pin_memory=device.type == "cuda",
        )
    )
    meter = Meter(state, opts.log_every, opts.started, log, echo)
    next_ckpt, next_fd = _next_multiple(state.nimg, opts.ckpt_kimg), _next_multiple(state.nimg, opts.fd_kimg)
    t_ckpt, last_path = time.monotonic(), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with StopFlag(opts.max_minutes, opts.started) as flag:  # a signal stops after the step, with a checkpoint
        while True:
            reason = _stop_reason(state, opts, flag)
            due = state.nimg >= next_ckpt or time.monotonic() - t_ckpt >= opts.ckpt_minutes * 60
            if dist.enabled:  # rank 0 decides for everyone, in one small broadcast per step
                stop, due = ddp.broadcast_flags([bool(reason), due], device)
                reason = (reason or "stopped by rank 0") if stop else ""
            if reason:
                break
            if due and state.step > 0:
                last_path = save_run_checkpoint(state, opts, data_stats, log) or last_path
                next_ckpt, t_ckpt = _next_multiple(state.nimg, opts.ckpt_kimg), time.monotonic()
            meter.add(train_step(state, to_float_images(next(batches), device)))
            if state.nimg >= next_fd:
                next_fd = _next_multiple(state.nimg, opts.fd_kimg)
                if fd_eval is not None:
                    t0 = time.monotonic()
                    fds = fd_eval(state.G_ema)
                    log.write(
                        kind="fd",
                        step=state.step,
                        kimg=state.nimg / 1000,
                        n=opts.fd_n,
                        seconds=time.monotonic() - t0,
                        **fds,
                    )
                    echo(
                        f"[train gan] FD @ {state.nimg / 1000:.0f} kimg: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in fds.items())
                    )
                ddp.barrier()
        last_path = save_run_checkpoint(state, opts, data_stats, log) or last_path
        if dist.is_main and opts.compact_to is not None and last_path is not None:
            echo(f"[train gan] compact checkpoint for upload: {compact_checkpoint(last_path, opts.compact_to)}")
        if dist.is_main:
            log.write(
                kind="stop",
                step=state.step,
                kimg=state.nimg / 1000,
                reason=reason,
                time_s=time.monotonic() - opts.started,
            )
            echo(
                f"[train gan] stopped ({reason}) at step {state.step}, {state.nimg / 1000:.1f} kimg; checkpoint {last_path}"
            )
    dataset.close()
    return last_path
