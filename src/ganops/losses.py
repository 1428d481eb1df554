"""GAN losses, one small function pair each (discriminator, generator), and a registry by name.

Every function takes the discriminator's raw outputs (logits) as float tensors. The discriminator
functions take the real and the fake logits; the generator functions take the fake logits scored by
the just-updated discriminator. Discriminator accuracy is the sign of the logit for every loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def bce_discriminator(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    real_target = torch.full_like(real, 1.0 - label_smoothing)  # one-sided smoothing: real targets only
    return (F.binary_cross_entropy_with_logits(real, real_target)
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def bce_generator(fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))  # non-saturating: log D(G(z))


def hinge_discriminator(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_generator(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def lsgan_discriminator(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    # targets 1 and -1, so the sign of the output still says real or fake
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * ((fake + 1.0) ** 2).mean()


def lsgan_generator(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


def wasserstein_discriminator(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return fake.mean() - real.mean()  # the gradient penalty is added by the caller (it needs the network)


def wasserstein_generator(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
    scores = discriminator(mixed).float()
    grads, = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


@dataclass(frozen=True)
class GanLoss:
    discriminator: Callable[..., torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]
    label: str  # the y axis of the loss plot
    output_label: str  # what d_x and d_g_z hold for this loss
    sigmoid_outputs: bool  # report D's outputs as probabilities (BCE) or as raw scores
    gradient_penalty: bool = False


LOSSES: dict[str, GanLoss] = {
    "bce": GanLoss(bce_discriminator, bce_generator, "BCE loss", "mean sigmoid(D(.))", True),
    "hinge": GanLoss(hinge_discriminator, hinge_generator, "hinge loss", "mean D(.) (logit)", False),
    "lsgan": GanLoss(lsgan_discriminator, lsgan_generator, "least-squares loss", "mean D(.) (score)", False),
    "wgan-gp": GanLoss(wasserstein_discriminator, wasserstein_generator, "Wasserstein loss + GP",
                       "mean D(.) (critic)", False, gradient_penalty=True),
}
