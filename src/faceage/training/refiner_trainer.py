"""Trainer for the realism refiner (``faceage train refiner``) on the CPU or a GPU, resumable.

Data: the teacher pairs of ``faceage data pairs`` (the prototype method's aged faces, their target
ages and shape flows) and the prepared faces they came from (``--data``), decoded once at ``size``
px and cached in the run folder. For each pair the input face is warped by the pair's flow, so
the refiner sees the aged face and the unaged one pixel-aligned. A fixed ``VAL_PAIRS`` of the
pairs are held out for the samples and the validation numbers.

Each step draws B pairs (uniformly) and, for the discriminator, one REAL training face of each
pair's target age group (lifespan groups) and a wrong group for it. With
``refined = R(aged, warped, source, target)``:

- D (LSGAN, projected on frozen MobileNetV2, DiffAugment): (real face, its group) -> 1,
  (refined, target group) -> 0, (real face, wrong group) -> 0, so D judges whether a face looks
  like a real face *of that age*.
- R: ``lambda_gan * L_G`` + ``lambda_id * relu(id(refined) - id(aged))``: identity to the (warped)
  input by AlexNet conv5 features, only where the refiner loses more of it than the prototype
  already did (the aging itself is not undone), + ``lambda_age * L_age`` (target group under the
  own regressor) + ``lambda_residual * mean (luma change)^2`` (+ a hundredth of it on the colour
  gain's squared logits), so it corrects rather than repaints.

Determinism and resume as in IPCGAN's trainer: step k's draws come from (seed, k); a checkpoint
holds R, D, R's EMA, both optimisers and the step; ``--init-from`` starts R from exported weights
(the shipped ones) with a fresh D. The EMA refiner is exported (fp16) at each checkpoint as
``refiner.safetensors`` + ``.json``. Samples (``samples-*.png``: held-out pairs; rows: input,
prototype, refined, luma change x4) are dataset-derived: never commit them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from faceage.age_groups import get_grouping
from faceage.errors import DatasetError
from faceage.models.age_regressor import count_parameters
from faceage.models.colour import luma_chroma_edit
from faceage.models.io import load_flat, save_flat
from faceage.models.ipcgan import IPCGANConfig, ProjectedDiscriminator
from faceage.models.refiner import Refiner, RefinerConfig
from faceage.training.adversarial import FrozenJudges, judge_under, lsgan, random_flip, trainable
from faceage.training.age_trainer import load_split, step_seed, to_tensor
from faceage.training.ema import make_ema, update_ema
from faceage.training.run import (
    METRICS_NAME,
    OPTIONS_NAME,
    StepLoop,
    append_jsonl,
    check_run_folder,
    lineage,
    load_parts,
    save_parts,
)
from faceage.training.teacher_pairs import load_teacher_pairs

WEIGHTS_NAME = "refiner.safetensors"
VAL_PAIRS = 64
_RESUME_FREE = {
    "pairs",
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
class RefinerTrainOptions:
    pairs: str
    data: str
    out: str
    grouping: str = "lifespan"
    size: int = 128
    batch: int = 16
    steps: int = 4000
    lr_g: float = 2e-4
    lr_d: float = 6e-4
    lambda_gan: float = 1.0
    lambda_id: float = 1.0
    lambda_age: float = 0.5
    lambda_residual: float = 10.0  # on the mean squared luma change
    identity_size: int = 96
    channels: int = 16
    levels: int = 3
    blocks: int = 2
    max_luma: float = 0.25
    d_channels: int = 32
    diffaugment: bool = True
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
        for name in ("lambda_gan", "lambda_id", "lambda_age", "lambda_residual"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        self.model_config()  # validates the architecture

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RefinerTrainOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_config(self) -> RefinerConfig:
        return RefinerConfig(
            resolution=self.size,
            channels=self.channels,
            levels=self.levels,
            blocks=self.blocks,
            max_luma=self.max_luma,
        )


class PairSampler:
    """All random draws of one step, from (seed, step): pairs, real faces of their target groups, wrong groups."""

    def __init__(self, n_pairs: int, target_groups: np.ndarray, real_groups: np.ndarray, num_groups: int, seed: int):
        self.n = n_pairs
        self.target_groups = target_groups
        self.by_group = [np.flatnonzero(real_groups == g) for g in range(num_groups)]
        empty = [g for g, idx in enumerate(self.by_group) if len(idx) == 0]
        if empty:
            raise DatasetError(f"no real training faces in age group(s) {empty}")
        self.num_groups = num_groups
        self.seed = seed

    def draw(self, step: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, 0x2EF])
        pairs = rng.integers(0, self.n, size=batch)
        real = np.array([rng.choice(self.by_group[g]) for g in self.target_groups[pairs]])
        wrong = (self.target_groups[pairs] + rng.integers(1, self.num_groups, size=batch)) % self.num_groups
        return pairs, real, wrong


def refine(
    R: Refiner, aged: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor, source: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(refined, luma change, gain logits), both only where ``mask`` (B, 1, S, S) lets the method
    paste: the refiner is trained on exactly what it may change at run time."""
    luma, gain = R.residual(aged, warped, source, target)
    luma, gain = luma * mask, gain * mask
    return luma_chroma_edit(aged, luma, gain, R.cfg.chroma_factor), luma, gain


def train_step(R, D, r_opt, d_opt, judges: FrozenJudges, batch: dict, opts: RefinerTrainOptions, step: int) -> dict:
    """One D update and one R update. ``batch``: float tensors aged/warped/real, ages, group indices."""
    generator = torch.Generator().manual_seed(step_seed(opts.seed, step))
    flip = torch.rand(batch["aged"].shape[0], generator=generator) < 0.5

    def mirror(x: torch.Tensor) -> torch.Tensor:  # aged and warped flip together
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    aged, warped, mask = mirror(batch["aged"]), mirror(batch["warped"]), mirror(batch["mask"])
    real = random_flip(batch["real"], generator)
    group, wrong = batch["group"], batch["wrong"]

    R.train(), D.train()
    refined, luma, gain_logits = refine(R, aged, warped, mask, batch["source"], batch["target"])

    def judge(x: torch.Tensor, *conditions: torch.Tensor) -> list[list[torch.Tensor]]:
        return judge_under(D, x, conditions, generator if opts.diffaugment else None)

    d_real, d_wrong = judge(real, group, wrong)
    (d_fake,) = judge(refined.detach(), group)
    d_loss = 0.5 * lsgan(d_real, 1.0) + 0.25 * (lsgan(d_fake, 0.0) + lsgan(d_wrong, 0.0))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()

    params = trainable(D)
    for p in params:
        p.requires_grad_(False)
    (g_scores,) = judge(refined, group)
    g_gan = 0.5 * lsgan(g_scores, 1.0)
    for p in params:
        p.requires_grad_(True)
    with torch.no_grad():
        id_before = judges.identity_per_face(aged, warped)
    id_after = judges.identity_per_face(refined, warped)
    g_id = torch.relu(id_after - id_before).mean()
    g_age, age_acc = judges.age(refined, group)
    # squared, not absolute: an L1 penalty's constant pull outweighed the weak early adversarial
    # gradient and held every change at exactly zero (a run with lambda_age 0.05 never moved)
    g_res = luma.pow(2).mean() + 0.01 * gain_logits.pow(2).mean()
    loss = opts.lambda_gan * g_gan + opts.lambda_id * g_id + opts.lambda_age * g_age + opts.lambda_residual * g_res
    r_opt.zero_grad(set_to_none=True)
    loss.backward()
    r_opt.step()
    return {
        "d_loss": float(d_loss.detach()),
        "d_real": sum(float(x.detach().mean()) for x in d_real) / len(d_real),
        "d_fake": sum(float(x.detach().mean()) for x in d_fake) / len(d_fake),
        "g_gan": float(g_gan.detach()),
        "g_id": float(g_id.detach()),
        "id_after": float(id_after.detach().mean()),
        "g_age": float(g_age.detach()),
        "age_acc": float(age_acc),
        "luma_change": float(luma.detach().abs().mean()),
    }


@torch.no_grad()
def evaluate(R, D, judges: FrozenJudges, val: dict, device) -> dict:  # noqa: ANN001
    """On the held-out pairs: age-group accuracy and own-regressor age, prototype vs refined;
    D's mean score of both under the target group; conv5 distance to the input; the luma change."""
    R.eval(), D.eval()
    aged, warped, group = val["aged"].to(device), val["warped"].to(device), val["group"].to(device)
    refined, luma, _ = refine(
        R, aged, warped, val["mask"].to(device), val["source"].to(device), val["target"].to(device)
    )
    out: dict[str, object] = {}
    for name, x in (("prototype", aged), ("refined", refined)):
        pred = judges.regressor(x)
        _, acc = judges.age(x, group)
        scores = judge_under(D, x, [group])[0]
        out[name] = {
            "age_error": float((pred.age - val["target"].to(device)).abs().mean()),
            "group_acc": float(acc),
            "d_score": sum(float(s.mean()) for s in scores) / len(scores),
            "identity": float(judges.identity(x, warped)),
        }
    out["luma_change"] = float(luma.abs().mean())
    return out


def sample_grid(R, val: dict, rows: int = 8) -> np.ndarray:
    """Columns: input (warped), prototype, refined, luma change x4 on grey; one row per held-out pair."""
    with torch.no_grad():
        aged, warped = val["aged"][:rows], val["warped"][:rows]
        refined, luma, _ = refine(R, aged, warped, val["mask"][:rows], val["source"][:rows], val["target"][:rows])
        change = (4 * luma).clamp(-1, 1).expand(-1, 3, -1, -1)
        cols = [warped, aged, refined, change]
    grid = torch.cat([torch.cat([c[i] for c in cols], dim=2) for i in range(len(aged))], dim=1)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def _metadata(opts: RefinerTrainOptions, step: int, pairs_manifest: dict) -> dict:
    from faceage.data.shards import MANIFEST, sha256_file

    meta = {
        "steps": step,
        "kimg": round(step * opts.batch / 1000, 3),
        "batch": opts.batch,
        "grouping": opts.grouping,
        "pairs": str(opts.pairs),
        "pairs_count": pairs_manifest.get("pairs"),
        "teacher": pairs_manifest.get("teacher"),
        "data": str(opts.data),
        "data_manifest_sha256": sha256_file(Path(opts.data) / MANIFEST),
        "losses": {
            "lambda_gan": opts.lambda_gan,
            "lambda_id": opts.lambda_id,
            "lambda_age": opts.lambda_age,
            "lambda_residual": opts.lambda_residual,
            "discriminator": "projected (frozen MobileNetV2), conditioned on the lifespan group, DiffAugment",
            "identity_features": f"ST-LPIPS AlexNet conv5 at {opts.identity_size} px, hinge on the prototype's own loss",
            "age_classifier": "faceage age_regressor (shipped)",
        },
    }
    meta.update(lineage(opts.init_from, "Refiner", step))
    return meta


def train_refiner(
    opts: RefinerTrainOptions,
    resume: bool = False,
    log: Callable[[str], None] = print,
    stop_after_steps: int | None = None,
) -> dict:
    """Train (or resume) a run in ``opts.out``; return a summary. ``stop_after_steps`` ends the call
    after that many global steps with a checkpoint, as an interruption would."""
    from faceage.atomic import write_json_atomic
    from faceage.data.shards import MANIFEST
    from faceage.imageio import save_image

    t0, started = time.perf_counter(), time.monotonic()
    torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(opts, out, resume, _RESUME_FREE)
    write_json_atomic(out / OPTIONS_NAME, opts.to_dict())
    manifest_path = Path(opts.pairs) / MANIFEST
    pairs_manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    grouping = get_grouping(opts.grouping)
    train = load_split(opts.data, "train", opts.size, out, opts.limit)
    pairs = load_teacher_pairs(opts.pairs, opts.data, opts.size, out)
    pairs = pairs.subset(np.flatnonzero(np.isin(pairs.keys, train.keys)))  # --limit: pairs of the faces loaded
    warped = pairs.warped()
    order = np.random.default_rng(opts.seed).permutation(len(pairs))
    n_val = min(VAL_PAIRS, len(pairs) // 4)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    target_groups = grouping.group_of(pairs.target)
    sampler = PairSampler(
        len(train_idx), target_groups[train_idx], grouping.group_of(train.ages), grouping.num_groups, opts.seed
    )
    log(
        f"data: {len(train_idx)} teacher pairs (+{n_val} held out) at {opts.size} px, {len(train)} real faces; "
        f"pairs per target group {np.bincount(target_groups, minlength=grouping.num_groups).tolist()} "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    def tensors(idx: np.ndarray) -> dict:
        return {
            "aged": to_tensor(pairs.aged[idx]),
            "warped": to_tensor(warped[idx]),
            "mask": torch.from_numpy(pairs.mask[idx])[:, None],
            "source": torch.from_numpy(pairs.source[idx]),
            "target": torch.from_numpy(pairs.target[idx]),
            "group": torch.from_numpy(target_groups[idx]).long(),
        }

    val = tensors(val_idx)

    torch.manual_seed(opts.seed)
    R = Refiner(opts.model_config()).to(device)
    d_cfg = IPCGANConfig(
        resolution=opts.size, num_groups=grouping.num_groups, d_channels=opts.d_channels, d_type="projected"
    )
    D = ProjectedDiscriminator(d_cfg).to(device)
    if opts.init_from and not resume:
        init = load_flat(opts.init_from, Refiner, WEIGHTS_NAME, "refiner weights")
        if init.cfg != R.cfg:
            raise ValueError(f"--init-from {opts.init_from} has config {init.cfg}, the run wants {R.cfg}")
        R.load_state_dict(init.state_dict())
        log(f"refiner initialised from {opts.init_from}")
    R_ema = make_ema(R)
    r_opt = torch.optim.Adam(R.parameters(), lr=opts.lr_g, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(trainable(D), lr=opts.lr_d, betas=(0.5, 0.999))
    judges = FrozenJudges(grouping.edges, device, opts.identity_size)
    step, seconds_before = 0, 0.0
    parts = {"R": R, "D": D, "R_ema": R_ema, "r_opt": r_opt, "d_opt": d_opt}
    if resume:
        step, seconds_before = load_parts(out, parts)
        log(f"resumed at step {step}")
    else:
        log(f"refiner {count_parameters(R) / 1e6:.2f} M parameters; {opts.steps} steps of {opts.batch}")

    def seconds() -> float:
        return seconds_before + time.perf_counter() - t0

    def checkpoint(step: int) -> None:
        save_parts(out, step, parts, opts.to_dict(), seconds())
        save_flat(R_ema, out / WEIGHTS_NAME, _metadata(opts, step, pairs_manifest))

    def one_step(k: int) -> dict:
        chosen, real, wrong = sampler.draw(k, opts.batch)
        batch = {name: v.to(device) for name, v in tensors(train_idx[chosen]).items()}
        batch["real"] = to_tensor(train.images[real]).to(device)
        batch["wrong"] = torch.from_numpy(wrong).long().to(device)
        parts = train_step(R, D, r_opt, d_opt, judges, batch, opts, k)
        seen = (k + 1) * opts.batch
        update_ema(R_ema, R, 0.5 ** (opts.batch / max(1.0, min(opts.ema_half_life_kimg * 1000, seen * 0.5))))
        return parts

    def line(k: int, parts: dict, rate: float) -> str:
        return (
            f"step {k}/{opts.steps} D {parts['d_loss']:.3f} G {parts['g_gan']:.3f} id {parts['g_id']:.3f} "
            f"age {parts['g_age']:.3f} acc {parts['age_acc']:.2f} luma {parts['luma_change']:.4f} {rate:.1f} img/s"
        )

    def validate(k: int) -> None:
        result = evaluate(R_ema, D, judges, val, device)
        append_jsonl(out / METRICS_NAME, {"step": k, "val": result})
        log(
            "val: "
            + "; ".join(
                f"{name} age err {v['age_error']:.1f} acc {v['group_acc']:.2f} D {v['d_score']:.3f} id {v['identity']:.3f}"
                for name, v in result.items()
                if isinstance(v, dict)
            )
        )
        save_image(out / f"samples-{k:07d}.png", sample_grid(R_ema.cpu(), {n: v.cpu() for n, v in val.items()}))
        R_ema.to(device)

    loop = StepLoop.for_run(opts, opts.sample_every, log, seconds, started, stop_after_steps)
    return loop.run(step, one_step, line, validate, checkpoint)
