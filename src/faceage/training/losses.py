"""GAN losses as free functions: non-saturating logistic, lazy R1, path length, sub-generator consistency.

All take and return tensors; none holds state. Weighting by lazy-regularisation intervals and
loss weights is the caller's job (see :mod:`faceage.training.gan`), so each function here is the
plain quantity from its paper and easy to unit test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceage.models.layers import box_downsample


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator logistic loss: E[softplus(D(fake))] + E[softplus(-D(real))] (StyleGAN2)."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
    return F.softplus(-fake_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 = E[ ||d D(x) / d x||^2 ] over real images x (Mescheder et al. 2018), per-sample mean.

    ``real_images`` must have ``requires_grad=True`` and ``real_logits`` must come from them. The
    gradient is taken with ``create_graph=True`` so the penalty itself can be back-propagated;
    it is computed in float32 whatever the dtype of the forward pass (call D outside autocast).
    The caller multiplies by gamma / 2 and by the lazy-regularisation interval.
    """
    (grad,) = torch.autograd.grad(
        outputs=real_logits.float().sum(), inputs=real_images, create_graph=True, only_inputs=True
    )
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def path_length_penalty(
    fake_images: torch.Tensor, ws: torch.Tensor, mean_path_length: torch.Tensor, decay: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser: (penalty, updated mean, per-sample path lengths).

    Projects the images on unit-variance noise scaled by 1/sqrt(H*W), takes the Jacobian-vector
    product with the W+ codes ``ws`` (which must require grad and have produced the images),
    and penalises the squared deviation of its norm from a running mean. ``mean_path_length`` is
    a 0-d float tensor (the state to carry); the returned mean is detached.
    """
    h, w = fake_images.shape[2], fake_images.shape[3]
    noise = torch.randn_like(fake_images) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad(outputs=(fake_images * noise).sum(), inputs=ws, create_graph=True)
    lengths = grad.float().square().sum(dim=2).mean(dim=1).sqrt()
    new_mean = mean_path_length + decay * (lengths.detach().mean() - mean_path_length)
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.detach(), lengths.detach()


def consistency_loss(sub_images: torch.Tensor, full_images: torch.Tensor) -> torch.Tensor:
    """Step S29 of *A StyleGAN-based face age editing method for mobile terminals*: MSE( G_{r,c}(w), down_r(G(w)) ) with the full generator's output detached.

    ``sub_images`` (B, 3, r, r) from the sub-generator with resolution r and channel ratio c;
    ``full_images`` (B, 3, R, R) from the full generator on the same w (and, ideally, the same
    noise). The full output is a fixed target (detached), so this loss trains the sub-generator
    towards the full one and never the other way round. Zero when the sub-generator is the full one.
    """
    if sub_images.shape[0] != full_images.shape[0]:
        raise ValueError(f"batch mismatch: {sub_images.shape[0]} vs {full_images.shape[0]}")
    target = box_downsample(full_images.detach().float(), sub_images.shape[-1])
    return F.mse_loss(sub_images.float(), target)
