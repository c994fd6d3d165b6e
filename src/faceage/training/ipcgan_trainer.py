"""Trainer for IPCGAN (*Face Aging with Identity-Preserved Conditional Generative Adversarial Networks*) on prepared face shards, on CPU or GPU, resumable.

Each step draws B source faces (decade-balanced, so children and the elderly are sources as often
as adults), a target group per face (uniform over the grouping), and B real faces *of those target
groups* for the discriminator. With ``fake = G(source, target)``:

- D (LSGAN, the paper's L_D): real pairs (real face of group t, t) -> 1; generated pairs (fake, t) -> 0
  and, as the paper's second term describes, real faces with a wrong condition (real, t' != t) -> 0,
  so D judges the *pair* and G must produce the group's look, not just any face.
- G: ``lambda_gan * L_G + lambda_id * L_identity + lambda_age * L_age`` where L_G is the LSGAN
  generator term, L_identity the mean squared difference of AlexNet conv5 features of the source
  and the fake (``faceage.models.alexnet``: the shift-tolerant ImageNet AlexNet bundled with
  stlpips-pytorch, the closest to the paper's AlexNet conv5 that can be had here), and L_age the
  softmax loss of the target group under our own age regressor's group probabilities
  (``group_log_probs``; frozen, eval mode; never the evaluator).

Discriminator (``d_type``): ``projected`` (default) judges frozen MobileNetV2 features
(``ProjectedDiscriminator``, "Projected GANs Converge Faster"); ``patch`` is the pixel PatchGAN of
the first shipped weights, whose D stayed near chance on CPU budgets. With ``diffaugment`` every
image D sees, real or generated, in D's and G's steps, gets translation, colour (brightness,
saturation, contrast) and cutout ("Differentiable Augmentation for Data-Efficient GAN Training",
Zhao et al., 2020: every op on every image, differentiable, so G learns through it).
Generator head (``head``): ``luma`` (default) edits luminance at full resolution and colour only as
a smooth gain (``faceage.models.colour``), ``rgb`` the free RGB change of the first weights.

Optimisation: Adam (beta1 0.5) for both nets, constant learning rate, an EMA of G's weights
(exported). Augmentation of G's input: horizontal flips only (age cues must survive).

Determinism and resume: the draws of step k come from (seed, k); a checkpoint
(``faceage.training.checkpoint_format``) holds G, D, EMA, both optimisers and the step, so ``--resume``
continues exactly. Without the full state (a fresh machine), ``--init-from`` starts G and its EMA
from exported weights (the shipped ones), with a fresh D; weights of another head (``rgb``) give
their encoder, blocks and decoder, with the output layer zeroed (the identity) for the new head.

Run folder: ``options.json``, ``metrics.jsonl``, ``ckpt-*`` (latest two), ``cache-*.npz`` (decoded
splits), ``samples-*.png`` (val faces x groups; dataset-derived, never commit them),
``ipcgan_generator.safetensors`` + ``.json`` (EMA generator, fp16, written at each checkpoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from faceage.age_groups import get_grouping
from faceage.data.balance import balanced_weights
from faceage.errors import DatasetError
from faceage.models.age_regressor import count_parameters, group_log_probs
from faceage.models.io import load_flat, save_flat
from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator, build_discriminator
from faceage.training.adversarial import FrozenJudges, judge_under, lsgan, random_flip, trainable
from faceage.training.age_trainer import load_split, step_seed, to_tensor
from faceage.training.ema import make_ema, update_ema
from faceage.training.run import (
    METRICS_NAME,
    OPTIONS_NAME,
    StepLoop,
    append_jsonl,
    check_run_folder,
    load_parts,
    save_parts,
)

WEIGHTS_NAME = "ipcgan_generator.safetensors"
_RESUME_FREE = {
    "data",
    "out",
    "threads",
    "max_minutes",
    "log_every",
    "steps",
    "init_from",
    "sample_every",
    "checkpoint_every",
    "device",
}


@dataclass
class IPCGANTrainOptions:
    data: str
    out: str
    grouping: str = "lifespan"
    size: int = 128
    batch: int = 16
    steps: int = 20000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lambda_gan: float = 1.0  # lambda_1
    lambda_id: float = 1.0  # lambda_2, on the normalised conv5 distance (FrozenJudges.identity)
    lambda_age: float = 0.5  # lambda_3
    identity_size: int = 96  # AlexNet input side for the identity term (compute: 96 px costs half of 128)
    # Defaults sized for CPU training (G 0.6 M, D 0.7 M parameters); the paper's widths are 32 / 64.
    g_channels: int = 16
    g_blocks: int = 6
    d_channels: int = 32
    d_layers: int = 4
    d_type: str = "projected"
    head: str = "luma"
    diffaugment: bool = True
    balance_power: float = 0.5
    ema_half_life_kimg: float = 2.0
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    max_minutes: float | None = None
    limit: int | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    sample_every: int = 500
    init_from: str | None = None

    def __post_init__(self) -> None:
        get_grouping(self.grouping)
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2, got {self.batch}")
        for name in ("lambda_gan", "lambda_id", "lambda_age"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        self.model_config()  # validates the architecture

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IPCGANTrainOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_config(self) -> IPCGANConfig:
        return IPCGANConfig(
            resolution=self.size,
            num_groups=get_grouping(self.grouping).num_groups,
            g_channels=self.g_channels,
            g_blocks=self.g_blocks,
            d_channels=self.d_channels,
            d_layers=self.d_layers,
            head=self.head,
            d_type=self.d_type,
        )


class Sampler:
    """All random draws of one step, from (seed, step): source faces, target groups, real faces."""

    def __init__(self, ages: np.ndarray, groups: np.ndarray, num_groups: int, balance_power: float, seed: int):
        self.weights = balanced_weights(ages, balance_power)
        self.by_group = [np.flatnonzero(groups == g) for g in range(num_groups)]
        empty = [g for g, idx in enumerate(self.by_group) if len(idx) == 0]
        if empty:
            raise DatasetError(f"no training faces in age group(s) {empty}")
        self.num_groups = num_groups
        self.seed = seed

    def draw(self, step: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, 0x1BC])
        source = rng.choice(len(self.weights), size=batch, p=self.weights)
        target = rng.integers(0, self.num_groups, size=batch)
        real = np.array([rng.choice(self.by_group[g]) for g in target])
        wrong = (target + rng.integers(1, self.num_groups, size=batch)) % self.num_groups
        return source, target, real, wrong


def train_step(G, D, g_opt, d_opt, losses: FrozenJudges, batch: dict, opts: IPCGANTrainOptions, step: int) -> dict:
    """One D update and one G update. ``batch`` holds float tensors source/real and index tensors."""
    generator = torch.Generator().manual_seed(step_seed(opts.seed, step))
    source, real = random_flip(batch["source"], generator), random_flip(batch["real"], generator)
    target, wrong = batch["target"], batch["wrong"]

    G.train(), D.train()
    fake = G(source, target)

    def judge(x: torch.Tensor, *conditions: torch.Tensor) -> list[list[torch.Tensor]]:
        return judge_under(D, x, conditions, generator if opts.diffaugment else None)

    # --- D: real pair -> 1; generated pair and mismatched real pair -> 0 (the paper's L_D, LSGAN)
    d_real, d_wrong = judge(real, target, wrong)
    (d_fake,) = judge(fake.detach(), target)
    d_loss = 0.5 * lsgan(d_real, 1.0) + 0.25 * (lsgan(d_fake, 0.0) + lsgan(d_wrong, 0.0))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()

    # --- G: fool D for the target group, keep conv5 identity features, be classified as the group
    params = trainable(D)
    for p in params:
        p.requires_grad_(False)
    (g_scores,) = judge(fake, target)
    g_gan = 0.5 * lsgan(g_scores, 1.0)
    for p in params:
        p.requires_grad_(True)
    g_id = losses.identity(fake, source)
    g_age, age_acc = losses.age(fake, target)
    g_loss = opts.lambda_gan * g_gan + opts.lambda_id * g_id + opts.lambda_age * g_age
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    real_mean = sum(float(x.detach().mean()) for x in d_real) / len(d_real)
    fake_mean = sum(float(x.detach().mean()) for x in d_fake) / len(d_fake)
    return {
        "d_loss": float(d_loss.detach()),
        "d_real": real_mean,
        "d_fake": fake_mean,
        "g_gan": float(g_gan.detach()),
        "g_id": float(g_id.detach()),
        "g_age": float(g_age.detach()),
        "age_acc": float(age_acc),
        "change": float((fake.detach() - source).abs().mean()),
    }


@torch.no_grad()
def evaluate(G, losses: FrozenJudges, images: np.ndarray, num_groups: int, centres, device) -> dict:
    """Per target group: our regressor's mean age of the outputs, group accuracy, conv5 distance."""
    x = to_tensor(images).to(device)
    out = {}
    for g in range(num_groups):
        groups = torch.full((len(images),), g, dtype=torch.long, device=device)
        fake = G(x, groups)
        pred = losses.regressor(fake)
        log_p = group_log_probs(pred.logits, losses.regressor.bin_ages, losses.edges)
        out[str(g)] = {
            "centre": centres[g],
            "mean_age": float(pred.age.mean()),
            "group_acc": float((log_p.argmax(1) == groups).float().mean()),
            "identity_loss": float(losses.identity(fake, x)),
        }
    return out


def sample_grid(G, images: np.ndarray, num_groups: int, device) -> np.ndarray:
    """Rows = faces, columns = input then each group: (rows*S, (G+1)*S, 3) uint8."""
    with torch.no_grad():
        x = to_tensor(images).to(device)
        cols = [x] + [G(x, torch.full((len(images),), g, dtype=torch.long, device=device)) for g in range(num_groups)]
    rows = torch.cat([torch.cat([c[i] for c in cols], dim=2) for i in range(len(images))], dim=1)
    return ((rows.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def _generator_metadata(opts: IPCGANTrainOptions, step: int) -> dict:
    from faceage.data.shards import MANIFEST, sha256_file

    meta = {
        "grouping": opts.grouping,
        "steps": step,
        "kimg": round(step * opts.batch / 1000, 3),
        "batch": opts.batch,
        "data": str(opts.data),
        "data_manifest_sha256": sha256_file(Path(opts.data) / MANIFEST),
        "losses": {
            "lambda_gan": opts.lambda_gan,
            "lambda_id": opts.lambda_id,
            "lambda_age": opts.lambda_age,
            "identity_features": f"ST-LPIPS AlexNet conv5, channel-normalised, at {opts.identity_size} px (stlpips-pytorch 0.0.2)",
            "age_classifier": "faceage age_regressor (shipped)",
        },
    }
    if opts.init_from:
        from faceage.models.io import read_flat_config

        _, before = read_flat_config(opts.init_from, "IPCGANGenerator")
        meta["initialised_from"] = {
            "file": Path(opts.init_from).name,
            **{k: before[k] for k in ("steps", "kimg", "total_kimg") if k in before},
        }
        meta["total_kimg"] = round(before.get("total_kimg", before.get("kimg", 0.0)) + meta["kimg"], 3)
    return meta


def train_ipcgan(
    opts: IPCGANTrainOptions,
    resume: bool = False,
    log: Callable[[str], None] = print,
    stop_after_steps: int | None = None,
) -> dict:
    """Train (or resume) a run in ``opts.out``; return a summary. ``stop_after_steps`` ends the call
    after that many global steps with a checkpoint, as an interruption would."""
    from faceage.imageio import save_image

    t0, started = time.perf_counter(), time.monotonic()
    torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(opts, out, resume, _RESUME_FREE)
    from faceage.atomic import write_json_atomic

    write_json_atomic(out / OPTIONS_NAME, opts.to_dict())
    grouping = get_grouping(opts.grouping)
    train = load_split(opts.data, "train", opts.size, out, opts.limit)
    val = load_split(opts.data, "val", opts.size, out, opts.limit)
    groups = grouping.group_of(train.ages)
    sampler = Sampler(train.ages, groups, grouping.num_groups, opts.balance_power, opts.seed)
    rng = np.random.default_rng(opts.seed)
    val_idx = np.sort(rng.choice(len(val), size=min(32, len(val)), replace=False))
    val_faces = val.images[val_idx]
    log(
        f"data: {len(train)} train, {len(val)} val faces at {opts.size} px; groups {grouping.labels()} "
        f"with {[len(i) for i in sampler.by_group]} faces ({time.perf_counter() - t0:.0f} s)"
    )

    torch.manual_seed(opts.seed)
    cfg = opts.model_config()
    G, D = IPCGANGenerator(cfg).to(device), build_discriminator(cfg).to(device)
    if opts.init_from and not resume:
        init = load_flat(opts.init_from, IPCGANGenerator, WEIGHTS_NAME, "IPCGAN generator weights")
        same_body = (
            replace(init.cfg, head=cfg.head, d_type=cfg.d_type, d_channels=cfg.d_channels, d_layers=cfg.d_layers) == cfg
        )
        if not same_body:
            raise ValueError(f"--init-from {opts.init_from} has config {init.cfg}, the run wants {cfg}")
        G.load_state_dict(init.state_dict())
        if init.cfg.head != cfg.head:  # another output head: keep the body, start the new head at the identity
            torch.nn.init.zeros_(G.to_rgb.weight)
            if G.to_rgb.bias is not None:
                torch.nn.init.zeros_(G.to_rgb.bias)
        log(f"generator initialised from {opts.init_from}")
    G_ema = make_ema(G)
    g_opt = torch.optim.Adam(G.parameters(), lr=opts.lr_g, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(trainable(D), lr=opts.lr_d, betas=(0.5, 0.999))
    losses = FrozenJudges(grouping.edges, device, opts.identity_size)
    step, seconds_before = 0, 0.0
    parts = {"G": G, "D": D, "G_ema": G_ema, "g_opt": g_opt, "d_opt": d_opt}
    if resume:
        step, seconds_before = load_parts(out, parts)
        log(f"resumed at step {step}")
    else:
        log(
            f"G {count_parameters(G) / 1e6:.2f} M, D {count_parameters(D) / 1e6:.2f} M parameters; "
            f"{opts.steps} steps of {opts.batch}"
        )

    def seconds() -> float:
        return seconds_before + time.perf_counter() - t0

    def checkpoint(step: int) -> None:
        save_parts(out, step, parts, opts.to_dict(), seconds())
        save_flat(G_ema, out / WEIGHTS_NAME, _generator_metadata(opts, step))

    def one_step(k: int) -> dict:
        source, target, real, wrong = sampler.draw(k, opts.batch)
        batch = {
            "source": to_tensor(train.images[source]).to(device),
            "real": to_tensor(train.images[real]).to(device),
            "target": torch.from_numpy(target).to(device),
            "wrong": torch.from_numpy(wrong).to(device),
        }
        parts = train_step(G, D, g_opt, d_opt, losses, batch, opts, k)
        seen = (k + 1) * opts.batch
        update_ema(G_ema, G, 0.5 ** (opts.batch / max(1.0, min(opts.ema_half_life_kimg * 1000, seen * 0.5))))
        return parts

    def line(k: int, parts: dict, rate: float) -> str:
        return (
            f"step {k}/{opts.steps} D {parts['d_loss']:.3f} G {parts['g_gan']:.3f} id {parts['g_id']:.3f} "
            f"age {parts['g_age']:.3f} acc {parts['age_acc']:.2f} change {parts['change']:.3f} {rate:.1f} img/s"
        )

    def validate(k: int) -> None:
        G_ema.eval()
        result = evaluate(G_ema, losses, val_faces, grouping.num_groups, grouping.centres, device)
        append_jsonl(out / METRICS_NAME, {"step": k, "val": result})
        log("val mean age per group: " + ", ".join(f"{v['centre']}->{v['mean_age']:.1f}" for v in result.values()))
        save_image(out / f"samples-{k:07d}.png", sample_grid(G_ema, val_faces[:8], grouping.num_groups, device))

    loop = StepLoop.for_run(opts, opts.sample_every, log, seconds, started, stop_after_steps)
    return loop.run(step, one_step, line, validate, checkpoint)
