"""Multi-GPU data parallelism for the trainers: torchrun environment, gradient all-reduce, rank 0 I/O.

Launch: ``torchrun --nproc_per_node=N -m faceage.cli train gan ...``. torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`init_from_env` joins the
process group (NCCL on GPUs, gloo on CPU) and pins each process to its GPU.

Why not ``DistributedDataParallel``: a GAN step runs G several times per step with different
parameter subsets (sub-generators slice the weights), and R1 needs a double backward through D;
DDP needs ``find_unused_parameters`` for the first and does not support the second. Like
StyleGAN2-ADA we keep plain modules, start every rank from identical weights
(:func:`broadcast_module`), and average gradients explicitly after each backward
(:func:`all_reduce_gradients`, one flat all-reduce per optimizer step). Each rank sees its own
``batch_per_gpu`` images, so the effective batch is ``world_size * batch_per_gpu`` and the
averaged gradient equals the single-process gradient on the combined batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device_type: str, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else single process."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op when single process)."""
    if not is_active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Average ``.grad`` over ranks, in one flat all-reduce; then replace NaN/inf by 0.

    Only parameters that have a gradient take part, like the optimizer, which skips the others.
    Every rank must therefore have gradients for the same parameters: the trainer guarantees it
    by drawing the sub-generator of each step from an RNG shared by all ranks. Zeroing NaN/inf
    (as StyleGAN2-ADA does) keeps one bad bf16 batch from poisoning the weights.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if not is_active():
        for grad in grads:
            torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
        return
    flat = torch.cat([grad.flatten() for grad in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    torch.nan_to_num_(flat, nan=0.0, posinf=0.0, neginf=0.0)
    offset = 0
    for grad in grads:
        n = grad.numel()
        grad.copy_(flat[offset : offset + n].view_as(grad))
        offset += n


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op when single process); returns ``t``."""
    if is_active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_flags(flags: list[bool], device: torch.device) -> list[bool]:
    """Rank 0's booleans on every rank, in one broadcast."""
    if not is_active():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.broadcast(t, src=0)
    return [bool(v) for v in t.tolist()]


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` on every rank (a list of world_size items); [obj] when single process."""
    if not is_active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_active():
        dist.barrier()
