"""Two gloo processes on CPU: averaged gradients equal the single-process gradient on the combined batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from gan_fixtures import tiny_config

from faceage.models.stylegan2 import Discriminator, Generator
from faceage.training import distributed as ddp
from faceage.training.losses import consistency_loss, d_logistic_loss, g_nonsaturating_loss

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD = 2


def _inputs(cfg):
    g = torch.Generator().manual_seed(5)
    reals = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    z = torch.randn(4, cfg.z_dim, generator=g)
    return reals, z


def _models(cfg):
    torch.manual_seed(0)
    return Generator(cfg.generator_config()), Discriminator(cfg.discriminator_config())


def _grads(cfg, idx, reduce: bool):
    """D and G gradients of the GAN losses on samples ``idx`` (fixed inputs, const noise)."""
    G, D = _models(cfg)
    reals, z = _inputs(cfg)
    reals, z = reals[idx], z[idx]
    ws = G.mapping(z)
    fakes = G.synthesis(ws, noise_mode="const")
    d_loss = d_logistic_loss(D(reals), D(fakes.detach()))
    D.zero_grad()
    d_loss.backward()
    if reduce:
        ddp.all_reduce_gradients(list(D.parameters()))
    d_grads = [p.grad.clone() if p.grad is not None else None for p in D.parameters()]  # fromRGB 8/16 unused
    D.requires_grad_(False)
    sub = G.synthesis(ws, resolution=16, ratio=0.5, noise_mode="const")
    g_loss = g_nonsaturating_loss(D(fakes)) + g_nonsaturating_loss(D(sub)) + 20 * consistency_loss(sub, fakes)
    G.zero_grad()
    g_loss.backward()
    if reduce:
        ddp.all_reduce_gradients(list(G.parameters()))
    g_grads = [p.grad.clone() if p.grad is not None else None for p in G.parameters()]
    return d_grads, g_grads


def _worker(rank: int, init_file: str, out_dir: str, data_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    info = ddp.init_from_env("cpu")
    cfg = tiny_config(batch=2)
    # minibatch-std groups are strided (i, i + B/2): rank r takes samples r and r + 2 of the combined
    # batch, so its group of 2 is exactly one group of the single-process batch of 4.
    d_grads, g_grads = _grads(cfg, [rank, rank + 2], reduce=True)

    # And one real training step: every rank must end with identical weights and ADA state.
    from faceage.training.dataset import ShardImageDataset, make_loader, to_float_images
    from faceage.training.gan import create_state, train_step

    torch.manual_seed(100 + rank)  # each rank its own z / noise / augmentation
    state = create_state(cfg, torch.device("cpu"), info)
    ds = ShardImageDataset(data_dir, resolution=32)
    batch = next(iter(make_loader(ds, 2, rank, WORLD, 0, 0, 0, False)))
    for _ in range(4):
        train_step(state, to_float_images(batch, torch.device("cpu")))
    torch.save(
        {
            "d": d_grads,
            "g": g_grads,
            "G": state.G.state_dict(),
            "D": state.D.state_dict(),
            "p": state.ada.p,
            "batch": batch,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    ddp.shutdown()


def test_gloo_gradients_match_single_process(face_shards, tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), str(face_shards)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    cfg = tiny_config(batch=4)
    d_ref, g_ref = _grads(cfg, [0, 1, 2, 3], reduce=False)
    assert sum(g is not None for g in d_ref) > 10 and sum(g is not None for g in g_ref) > 10
    for a, b, ref in zip(r0["d"] + r0["g"], r1["d"] + r1["g"], d_ref + g_ref):
        if ref is None:
            assert a is None and b is None
            continue
        assert torch.equal(a, b)
        torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-6)
    # Different data on each rank, same weights after the steps.
    assert not torch.equal(r0["batch"], r1["batch"])
    for name in ("G", "D"):
        for k, v in r0[name].items():
            assert torch.equal(v, r1[name][k]), f"{name}.{k} differs between ranks"
    assert r0["p"] == r1["p"]
