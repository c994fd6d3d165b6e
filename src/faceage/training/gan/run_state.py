"""A GAN run's state in and out of checkpoints: save, resume (exact, approximate or weights only),
export the EMA generator, compact a checkpoint for upload."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faceage.models.stylegan2 import Generator
from faceage.training import distributed as ddp
from faceage.training.checkpoint_format import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from faceage.training.gan.config import STATE_FORMAT, GANConfig
from faceage.training.gan.state import TrainState, seed_everything


def training_state_dict(state: TrainState, data_stats: dict | None = None) -> dict:
    """The checkpoint dict. Collective in multi-GPU runs (gathers every rank's RNG state)."""
    rng = ddp.all_gather_objects(capture_rng_state())
    return {
        "format": STATE_FORMAT,
        "config": state.cfg.to_dict(),
        "G": state.G.state_dict(),
        "D": state.D.state_dict(),
        "G_ema": state.G_ema.state_dict(),
        "opt_G": state.opt_G.state_dict(),
        "opt_D": state.opt_D.state_dict(),
        "augment": state.ada.state_dict(),
        "progress": {"step": state.step, "nimg": state.nimg, "pl_mean": float(state.pl_mean)},
        "rng": rng,
        "world_size": state.dist.world_size,
        "data": data_stats or {},
        "torch_version": torch.__version__,
    }


def load_module(module: nn.Module, sd: dict, what: str) -> None:
    from faceage.models.io import load_state_dict_strict

    load_state_dict_strict(module, {k: v for k, v in sd.items()}, what)


def _load_optimizer(opt: torch.optim.Optimizer, sd: dict) -> None:
    keep = [{k: g[k] for k in ("fused", "foreach", "capturable", "lr", "betas") if k in g} for g in opt.param_groups]
    opt.load_state_dict(sd)
    for group, kept in zip(opt.param_groups, keep):
        group.update(kept)  # this run's lr/betas and kernel choice, not the saved ones
        if group.get("fused") or group.get("capturable"):  # e.g. a CPU checkpoint resumed on a GPU
            for p in group["params"]:
                st = opt.state.get(p)
                if st and isinstance(st.get("step"), torch.Tensor):
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def load_training_state(state: TrainState, ckpt: dict, restore_rng: bool = True) -> list[str]:
    """Fill ``state`` from a checkpoint dict; returns warnings for anything re-initialised."""
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"not a GAN training checkpoint (format {ckpt.get('format')!r})")
    notes: list[str] = []
    if "compact" in ckpt:
        notes.append(
            f"compact checkpoint ({ckpt['compact']}): weights were stored in float16, optimizer "
            f"state {ckpt['compact']['optimizer']}; this resume is approximate, not bit-exact"
        )
    for name in ("G", "G_ema", "D"):
        if name in ckpt:
            load_module(getattr(state, name), ckpt[name], f"checkpoint {name}")
        elif name == "G_ema" and "G" in ckpt:
            load_module(state.G_ema, ckpt["G"], "checkpoint G (as G_ema)")
            notes.append("checkpoint has no G_ema: the average restarts from G")
        else:
            notes.append(f"checkpoint has no {name}: it is freshly initialised")
    for name in ("opt_G", "opt_D"):
        if name in ckpt:
            _load_optimizer(getattr(state, name), ckpt[name])
        else:
            notes.append(f"checkpoint has no {name}: Adam moments restart from zero")
    if "augment" in ckpt:
        state.ada.load_state_dict(ckpt["augment"])
    prog = ckpt.get("progress", {})
    state.step = int(prog.get("step", 0))
    state.nimg = int(prog.get("nimg", 0))
    state.pl_mean = torch.tensor(float(prog.get("pl_mean", 0.0)), device=state.device)
    if restore_rng:
        rngs = ckpt.get("rng") or []
        if len(rngs) == state.dist.world_size:
            restore_rng_state(rngs[state.dist.rank])
        else:
            notes.append(
                f"checkpoint has RNG states for {len(rngs)} ranks, this run has "
                f"{state.dist.world_size}: random streams are reseeded (not bit-exact)"
            )
            seed_everything(state.cfg.seed + 7919 * state.step, state.dist.rank)
    return notes


def init_from_weights(state: TrainState, folder: str | Path) -> list[str]:
    """Weights-only start: G and G_ema from a shipped model folder; D and optimizers fresh."""
    from faceage.models.io import load_model

    g = load_model(folder, expect=Generator)
    if g.cfg != state.G.cfg:
        raise ValueError(f"weights in {folder} have GeneratorConfig {g.cfg}, this run needs {state.G.cfg}")
    sd = {k: v.float() for k, v in g.state_dict().items()}
    load_module(state.G, sd, f"{folder}")
    load_module(state.G_ema, sd, f"{folder}")
    return [
        f"resuming from weights only ({folder}): G and G_ema start from these weights (fp16 -> fp32); "
        "D, both Adam optimizers, ADA p, step and kimg counters are RE-INITIALISED. Expect a few kimg "
        "of instability while D catches up; this is not an exact resume."
    ]


def export_ema(ckpt_path: str | Path, out_folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write a checkpoint's G_ema as a shippable model folder (config.json + fp16 safetensors)."""
    from faceage.models.io import save_model

    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt_path} is not a GAN training checkpoint")
    cfg = GANConfig.from_dict(ckpt["config"])
    G = Generator(cfg.generator_config())
    load_module(G, ckpt["G_ema"], f"{ckpt_path} G_ema")
    return save_model(G.eval(), out_folder, dtype=dtype)


def compact_checkpoint(ckpt_path: str | Path, out_dir: str | Path, keep_optimizer: bool = False) -> Path:
    """A smaller, *approximate* resume point: networks in float16, Adam moments in bfloat16 or dropped.

    Why: a full 128 px checkpoint is ~245 MB (G, G_ema, D in fp32 and both Adam states), more than
    one 64 MiB upload to a fresh GPU machine. The compact one without optimizer is ~55 MB (G, D,
    G_ema, ADA p, counters, RNG), with ``keep_optimizer`` ~125 MB. Resuming from it is not
    bit-exact (weights lose fp16 precision; dropped moments restart) and says so when loaded.
    """
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("format") != STATE_FORMAT:
        raise ValueError(f"{ckpt_path} is not a GAN training checkpoint")

    def cast(sd: dict, dtype: torch.dtype) -> dict:
        return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}

    for name in ("G", "D", "G_ema"):
        ckpt[name] = cast(ckpt[name], torch.float16)
    for name in ("opt_G", "opt_D"):
        if not keep_optimizer:
            ckpt.pop(name, None)
        elif name in ckpt:
            ckpt[name]["state"] = {
                i: {k: (v.to(torch.bfloat16) if k != "step" and v.is_floating_point() else v) for k, v in st.items()}
                for i, st in ckpt[name]["state"].items()
            }
    ckpt["compact"] = {
        "weights": "float16",
        "optimizer": "bfloat16" if keep_optimizer else "dropped",
        "source": str(ckpt_path),
    }
    return save_checkpoint(out_dir, int(ckpt["progress"]["step"]), ckpt, keep=None)


def merge_config(saved: dict, explicit: dict) -> tuple[GANConfig, dict]:
    """The checkpoint's config with the explicitly given fields (``augment.X`` for ADA) applied.

    Returns the config and the fields whose value actually changed.
    """
    merged = GANConfig.from_dict(saved).to_dict()
    changed = {}

    def norm(v):
        return list(v) if isinstance(v, tuple) else v

    for key, value in explicit.items():
        target, name = (merged["augment"], key.split(".", 1)[1]) if key.startswith("augment.") else (merged, key)
        if name not in target:
            raise ValueError(f"unknown config field {key!r}")
        if norm(target[name]) != norm(value):
            target[name] = norm(value)
            changed[key] = norm(value)
    return GANConfig.from_dict(merged), changed
