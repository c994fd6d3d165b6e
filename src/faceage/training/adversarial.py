"""What the image-to-image GAN trainers share (IPCGAN, the refiner): the frozen judges of identity
and age, LSGAN scores, DiffAugment, and a discriminator's scores under several conditions.

- ``FrozenJudges``: identity as the distance of channel-normalised AlexNet conv5 features (the
  shift-tolerant ImageNet AlexNet bundled with stlpips-pytorch: a torch network, never the SFace
  evaluator) and age as the softmax loss of a target group under faceage's own age regressor
  (frozen, eval mode; never the independent estimator).
- ``judge_under``: a batch's scores under each condition; a projected discriminator runs its
  frozen backbone once per batch. With a generator given, every image gets DiffAugment first
  ("Differentiable Augmentation for Data-Efficient GAN Training", Zhao et al., 2020: translation,
  colour, cutout on every image, differentiable, so the generator learns through it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from faceage.models.age_regressor import group_log_probs
from faceage.models.alexnet import load_alexnet
from faceage.models.io import load_age_regressor
from faceage.training.augment import AugmentConfig, augment

DIFFAUGMENT = AugmentConfig(ops=("translate", "brightness", "saturation", "contrast", "cutout"))


def trainable(D) -> list:  # noqa: ANN001 - any discriminator
    """D's parameters an optimiser should move (a projected D keeps its backbone frozen)."""
    return D.trainable_parameters() if hasattr(D, "trainable_parameters") else list(D.parameters())


def _scores(out) -> list[torch.Tensor]:  # noqa: ANN001 - one score map or a list of them
    return out if isinstance(out, list) else [out]


def lsgan(scores: list[torch.Tensor], label: float) -> torch.Tensor:
    """Mean over the scales of the LSGAN squared error to ``label``."""
    return torch.stack([(s - label).pow(2).mean() for s in scores]).mean()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored with probability 1/2 (age cues survive a mirror)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)


def judge_under(
    D,  # noqa: ANN001 - any (image, condition) discriminator
    x: torch.Tensor,
    conditions: Sequence[torch.Tensor],
    generator: torch.Generator | None = None,
) -> list[list[torch.Tensor]]:
    """D's scores of one batch under each condition; DiffAugment first when ``generator`` is given."""
    if generator is not None:
        x = augment(x, 1.0, DIFFAUGMENT, generator)
    if hasattr(D, "features"):
        feats = D.features(x)
        return [D.score(feats, c) for c in conditions]
    return [_scores(D(x, c)) for c in conditions]


class FrozenJudges:
    """The frozen networks behind a generator's identity and age terms."""

    def __init__(self, edges: tuple[float, ...], device: torch.device, identity_size: int = 96):
        self.alexnet = load_alexnet(device=device)
        self.regressor = load_age_regressor(device=device).requires_grad_(False)
        self.edges = edges
        self.identity_size = identity_size

    def conv5(self, images: torch.Tensor) -> torch.Tensor:
        """Channel-normalised conv5 features (unit length at each position, as LPIPS compares them):
        the raw activations are tiny (mean square ~1e-4) and their scale says nothing about identity."""
        if images.shape[-1] != self.identity_size:
            images = F.interpolate(
                images, size=(self.identity_size,) * 2, mode="bilinear", align_corners=False, antialias=True
            )
        f = self.alexnet(images).relu5
        return f / (f.pow(2).sum(1, keepdim=True) + 1e-20).sqrt()

    @staticmethod
    def feature_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B,) squared distance of two faces' normalised conv5 features (:meth:`conv5`), summed over
        channels, mean over positions: ~1.0 between different people, ~0.1 for mild noise or blur."""
        return (a - b).pow(2).sum(1).mean((1, 2))

    def identity_per_face(self, fake: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """(B,) :meth:`feature_distance` of ``fake`` to ``source`` (the source side frozen)."""
        with torch.no_grad():
            target = self.conv5(source)
        return self.feature_distance(self.conv5(fake), target)

    def identity(self, fake: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """:meth:`identity_per_face`, mean over the faces."""
        return self.identity_per_face(fake, source).mean()

    def age(self, fake: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax loss of ``groups`` under the regressor, share of faces put in their group)."""
        out = self.regressor(fake)
        log_p = group_log_probs(out.logits, self.regressor.bin_ages, self.edges)
        return F.nll_loss(log_p, groups), (log_p.argmax(1) == groups).float().mean()
