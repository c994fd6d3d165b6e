"""Trainer for the distilled student (``faceage train student``), resumable, CPU or GPU.

Data: the teacher pairs (``faceage data pairs``: the default method's aged faces, flows and
masks) and the faces they came from, at the student's largest output size (cached in the run
folder). A fixed ``VAL_PAIRS`` of the pairs are held out.

Each step (the training of *A StyleGAN-based face age editing method for mobile terminals*,
S27-S29, on an image-to-image network): the full network (largest resolution, all channels) and
one sampled sub-network (another (resolution, channel ratio) pair, the same for the whole step:
the "sandwich" of slimmable networks, the full one trained at every step) run on the same B faces.
Losses, each a mean over the batch:

- distillation, for both: flow L1 to the teacher's flow (pixels of a 256 px face, at the flow's
  size), image L1 to the teacher's aged face at the network's resolution, and, for the full
  network, a perceptual term (channel-normalised AlexNet conv5 distance, as LPIPS compares features),
  and the smooth chroma error (chroma difference averaged over the colour gain's cells: the image
  L1 is mostly luma detail and let green/magenta patches through);
- consistency: the sub-network's image and flow against the full network's (detached), the
  image box-downsampled to the sub-network's resolution;
- identity and age, for the full network, small: conv5 identity to the input beyond what the
  teacher itself lost (hinge), and the target group under faceage's own age regressor.

Determinism and resume as in the other trainers: step k's draws come from (seed, k); a checkpoint
holds the network, its optimiser and the step; ``--init-from`` starts from exported weights. The
network is exported (fp16) at each checkpoint as ``student.safetensors`` + ``.json``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceage.age_groups import get_grouping
from faceage.models.age_regressor import count_parameters
from faceage.models.colour import rgb_to_ycc
from faceage.models.io import load_flat, save_flat
from faceage.models.layers import box_downsample
from faceage.models.student import Student, StudentConfig, apply_student, chroma_cell
from faceage.training.adversarial import FrozenJudges
from faceage.training.age_trainer import step_seed, to_tensor
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
from faceage.training.teacher_pairs import TeacherPairs, load_teacher_pairs

WEIGHTS_NAME = "student.safetensors"
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
    "eval_every",
    "checkpoint_every",
    "device",
}


@dataclass
class StudentTrainOptions:
    pairs: str
    data: str
    out: str
    batch: int = 16
    steps: int = 6000
    lr: float = 1e-3
    lambda_flow: float = 1.0  # per pixel of flow (256 px face)
    lambda_image: float = 10.0  # L1 on [-1, 1] images
    lambda_perceptual: float = 1.0
    lambda_chroma: float = 20.0  # L1 of the low-passed chroma difference to the teacher (colour blotches)
    lambda_consistency: float = 10.0
    lambda_id: float = 0.5
    lambda_age: float = 0.05
    identity_size: int = 96
    input_size: int = 128
    widths: tuple[int, ...] = (16, 32, 64, 96)
    top_width: int = 8
    blocks: int = 2
    resolutions: tuple[int, ...] = (64, 128, 256)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    flow_size: int = 32
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    max_minutes: float | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    eval_every: int = 500
    init_from: str | None = None

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.resolutions = tuple(int(r) for r in self.resolutions)
        self.ratios = tuple(float(c) for c in self.ratios)
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2, got {self.batch}")
        for f in fields(self):
            if f.name.startswith("lambda_") and getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0")
        self.model_config()

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("widths", "resolutions", "ratios"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudentTrainOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_config(self) -> StudentConfig:
        return StudentConfig(
            input_size=self.input_size,
            widths=self.widths,
            top_width=self.top_width,
            blocks=self.blocks,
            resolutions=self.resolutions,
            ratios=self.ratios,
            flow_size=self.flow_size,
        )


def sample_submodel(cfg: StudentConfig, seed: int, step: int) -> tuple[int, float]:
    """The step's sub-network, any (resolution, ratio) but the full one, from (seed, step)."""
    subs = [s for s in cfg.sub_models() if s != cfg.full]
    return random.Random(seed * 1_000_003 + step).choice(subs)


def _down(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else box_downsample(x, size)


def _flow_at(flow: torch.Tensor, size: int) -> torch.Tensor:
    return flow if flow.shape[-1] == size else F.adaptive_avg_pool2d(flow, size)


def distill_terms(
    student: Student,
    judges: FrozenJudges,
    faces: torch.Tensor,
    teacher: torch.Tensor,
    teacher_flow: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    submodel: tuple[int, float],
    teacher_features: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(losses, edited image, flow, the edited image's conv5 features) of one sub-network against
    the teacher; with ``teacher_features`` (the teacher's frozen conv5 features) the losses include
    the perceptual term, without them no features are computed (None)."""
    resolution, ratio = submodel
    flow, luma, gain = student(faces, source, target, resolution, ratio)
    edited, _ = apply_student(faces, flow, luma, gain, student.cfg.chroma_factor)
    target_image = _down(teacher, resolution)
    terms = {
        "flow": (flow - _flow_at(teacher_flow, flow.shape[-1])).abs().mean(),
        "image": (edited - target_image).abs().mean(),
        "chroma": chroma_error(edited, target_image, chroma_cell(student.cfg.chroma_factor, resolution)),
    }
    if teacher_features is None:
        return terms, edited, flow, None
    features = judges.conv5(edited)
    terms["perceptual"] = judges.feature_distance(features, teacher_features).mean()
    return terms, edited, flow, features


def chroma_error(edited: torch.Tensor, teacher: torch.Tensor, cell: int) -> torch.Tensor:
    """Mean absolute difference of the two images' chroma after averaging over ``cell`` px: the
    smooth colour error (green or magenta patches) that the image L1, dominated by luma detail
    the student cannot match, lets through."""
    diff = rgb_to_ycc(edited)[:, 1:] - rgb_to_ycc(teacher)[:, 1:]
    return F.avg_pool2d(diff, cell, ceil_mode=True).abs().mean() if cell > 1 else diff.abs().mean()


def train_step(student: Student, opt, judges: FrozenJudges, batch: dict, opts: StudentTrainOptions, step: int) -> dict:  # noqa: ANN001
    """One optimisation step: the full network and one sampled sub-network (see the module docstring).
    The frozen conv5 features of the teacher and the input are computed once and shared by the
    perceptual and identity terms; the sub-network has no perceptual term of its own (its
    consistency to the full network carries it, and AlexNet's backward is a third of a step)."""
    cfg = student.cfg
    generator = torch.Generator().manual_seed(step_seed(opts.seed, step))
    flip = torch.rand(batch["faces"].shape[0], generator=generator) < 0.5

    def mirror(x: torch.Tensor, sign: bool = False) -> torch.Tensor:
        flipped = x.flip(-1)
        if sign:  # a mirrored flow also points the other way horizontally
            flipped = torch.cat([-flipped[:, :1], flipped[:, 1:]], dim=1)
        return torch.where(flip.view(-1, 1, 1, 1), flipped, x)

    faces, teacher = mirror(batch["faces"]), mirror(batch["teacher"])
    teacher_flow = mirror(batch["flow"], sign=True)
    source, target = batch["source"], batch["target"]
    with torch.no_grad():
        teacher_features = judges.conv5(_down(teacher, cfg.full[0]))
        face_features = judges.conv5(faces)
    student.train()
    full, full_img, full_flow, full_features = distill_terms(
        student, judges, faces, teacher, teacher_flow, source, target, cfg.full, teacher_features
    )
    assert full_features is not None  # the full network has its perceptual term
    sub = sample_submodel(cfg, opts.seed, step)
    part, sub_img, sub_flow, _ = distill_terms(student, judges, faces, teacher, teacher_flow, source, target, sub)
    consistency = (sub_img - _down(full_img.detach(), sub[0])).abs().mean() + 0.1 * (
        sub_flow - full_flow.detach()
    ).abs().mean()
    lost_by_teacher = judges.feature_distance(teacher_features, face_features)
    identity = torch.relu(judges.feature_distance(full_features, face_features) - lost_by_teacher).mean()
    age, _ = judges.age(full_img, batch["group"])

    def distill(t: dict[str, torch.Tensor]) -> torch.Tensor:
        perceptual = t.get("perceptual", torch.zeros(()))
        return (
            opts.lambda_flow * t["flow"]
            + opts.lambda_image * t["image"]
            + opts.lambda_chroma * t["chroma"]
            + opts.lambda_perceptual * perceptual
        )

    loss = (
        distill(full)
        + distill(part)
        + opts.lambda_consistency * consistency
        + opts.lambda_id * identity
        + opts.lambda_age * age
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    out = {f"full_{k}": float(v.detach()) for k, v in full.items()}
    out.update({f"sub_{k}": float(v.detach()) for k, v in part.items()})
    out.update(
        consistency=float(consistency.detach()),
        identity=float(identity.detach()),
        age=float(age.detach()),
        loss=float(loss.detach()),
        sub_resolution=sub[0],
        sub_ratio=sub[1],
    )
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of [-1, 1] images (peak-to-peak 2)."""
    mse = float((a - b).pow(2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(4.0 / mse)


@torch.no_grad()
def evaluate(student: Student, judges: FrozenJudges, val: dict) -> dict:
    """Per sub-network on the held-out pairs: PSNR and perceptual distance to the teacher's face,
    flow error in pixels; the unedited input's own figures as the floor ("edit nothing")."""
    student.eval()
    faces, teacher = val["faces"], val["teacher"]
    out: dict[str, dict] = {}
    for resolution, ratio in student.cfg.sub_models():
        flow, luma, gain = student(faces, val["source"], val["target"], resolution, ratio)
        edited, _ = apply_student(faces, flow, luma, gain, student.cfg.chroma_factor)
        reference = _down(teacher, resolution)
        out[f"{resolution}x{ratio:g}"] = {
            "psnr": round(psnr(edited, reference), 2),
            "perceptual": round(
                float(judges.feature_distance(judges.conv5(edited), judges.conv5(reference)).mean()), 4
            ),
            "flow_px": round(float((flow - _flow_at(val["flow"], flow.shape[-1])).abs().mean()), 3),
        }
    size = student.cfg.resolutions[-1]
    out["unedited"] = {
        "psnr": round(psnr(_down(faces, size), _down(teacher, size)), 2),
        "perceptual": round(float(judges.feature_distance(judges.conv5(faces), judges.conv5(teacher)).mean()), 4),
        "flow_px": round(float(val["flow"].abs().mean()), 3),
    }
    return out


def _metadata(opts: StudentTrainOptions, step: int, pairs_manifest: dict) -> dict:
    from faceage.data.shards import MANIFEST, sha256_file

    meta = {
        "steps": step,
        "kimg": round(step * opts.batch / 1000, 3),
        "batch": opts.batch,
        "pairs": str(opts.pairs),
        "pairs_count": pairs_manifest.get("pairs"),
        "teacher": pairs_manifest.get("teacher"),
        "data": str(opts.data),
        "data_manifest_sha256": sha256_file(Path(opts.data) / MANIFEST),
        "losses": {k: v for k, v in opts.to_dict().items() if k.startswith("lambda_")},
    }
    meta.update(lineage(opts.init_from, "Student", step))
    return meta


def _tensors(pairs: TeacherPairs, idx: np.ndarray, groups: np.ndarray) -> dict:
    return {
        "faces": to_tensor(pairs.faces[idx]),
        "teacher": to_tensor(pairs.aged[idx]),
        "flow": torch.from_numpy(pairs.flow[idx]).permute(0, 3, 1, 2).contiguous(),
        "source": torch.from_numpy(pairs.source[idx]),
        "target": torch.from_numpy(pairs.target[idx]),
        "group": torch.from_numpy(groups[idx]).long(),
    }


def train_student(
    opts: StudentTrainOptions,
    resume: bool = False,
    log: Callable[[str], None] = print,
    stop_after_steps: int | None = None,
) -> dict:
    """Train (or resume) a run in ``opts.out``; return a summary."""
    from faceage.atomic import write_json_atomic
    from faceage.data.shards import MANIFEST

    t0, started = time.perf_counter(), time.monotonic()
    torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(opts, out, resume, _RESUME_FREE)
    write_json_atomic(out / OPTIONS_NAME, opts.to_dict())
    manifest_path = Path(opts.pairs) / MANIFEST
    pairs_manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    cfg = opts.model_config()
    pairs = load_teacher_pairs(opts.pairs, opts.data, cfg.resolutions[-1], out)
    groups = get_grouping("lifespan").group_of(pairs.target)
    order = np.random.default_rng(opts.seed).permutation(len(pairs))
    n_val = min(VAL_PAIRS, len(pairs) // 4)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    val = {k: v.to(device) for k, v in _tensors(pairs, val_idx, groups).items()}
    log(
        f"data: {len(train_idx)} teacher pairs (+{n_val} held out) at {cfg.resolutions[-1]} px ({time.perf_counter() - t0:.0f} s)"
    )

    torch.manual_seed(opts.seed)
    student = Student(cfg).to(device)
    if opts.init_from and not resume:
        init = load_flat(opts.init_from, Student, WEIGHTS_NAME, "student weights")
        if init.cfg != cfg:
            raise ValueError(f"--init-from {opts.init_from} has config {init.cfg}, the run wants {cfg}")
        student.load_state_dict(init.state_dict())
        log(f"student initialised from {opts.init_from}")
    opt = torch.optim.Adam(student.parameters(), lr=opts.lr, betas=(0.9, 0.99))
    judges = FrozenJudges(get_grouping("lifespan").edges, device, opts.identity_size)
    step, seconds_before = 0, 0.0
    parts = {"student": student, "opt": opt}
    if resume:
        step, seconds_before = load_parts(out, parts)
        log(f"resumed at step {step}")
    else:
        log(f"student {count_parameters(student) / 1e6:.2f} M parameters; {opts.steps} steps of {opts.batch}")

    def seconds() -> float:
        return seconds_before + time.perf_counter() - t0

    def checkpoint(step: int) -> None:
        save_parts(out, step, parts, opts.to_dict(), seconds())
        save_flat(student, out / WEIGHTS_NAME, _metadata(opts, step, pairs_manifest))

    def one_step(k: int) -> dict:
        rng = np.random.default_rng([opts.seed, k, 0x5D])
        chosen = train_idx[rng.integers(0, len(train_idx), size=opts.batch)]
        batch = {name: v.to(device) for name, v in _tensors(pairs, chosen, groups).items()}
        return train_step(student, opt, judges, batch, opts, k)

    def line(k: int, parts: dict, rate: float) -> str:
        return (
            f"step {k}/{opts.steps} flow {parts['full_flow']:.3f} image {parts['full_image']:.4f} "
            f"perc {parts['full_perceptual']:.4f} cons {parts['consistency']:.4f} "
            f"sub {parts['sub_resolution']}x{parts['sub_ratio']:g} {rate:.1f} img/s"
        )

    def validate(k: int) -> None:
        result = evaluate(student, judges, val)
        append_jsonl(out / METRICS_NAME, {"step": k, "val": result})
        log("val psnr: " + ", ".join(f"{name} {v['psnr']:.1f}" for name, v in result.items()))

    loop = StepLoop.for_run(opts, opts.eval_every, log, seconds, started, stop_after_steps)
    return loop.run(step, one_step, line, validate, checkpoint)
