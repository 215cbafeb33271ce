"""VAE and beta-VAE: representations learned by generating the image.

Kingma, Welling, ICLR 2014, "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114:
a Gaussian encoder q(z|x) = N(mu(x), diag sigma^2(x)), the reparameterisation z = mu + sigma * eps
with eps ~ N(0, I) (Sec. 2.4), a decoder p(x|z) and the evidence lower bound of Eq. (10) with the
closed-form KL against the prior p(z) = N(0, I) (Appendix B):

    ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)),
    KL   = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2),

estimated with one sample of z per image (L = 1, as the paper does for minibatches of 100 or more).

Higgins, Matthey, Pal, Burgess, Glorot, Botvinick, Mohamed, Lerchner, ICLR 2017, "beta-VAE: Learning
Basic Visual Concepts with a Constrained Variational Framework", Eq. (4): the KL weighted by
beta > 1, which trades reconstruction for a factorised (disentangled) posterior. With ``capacity``
the objective is Burgess et al. 2018 ("Understanding disentangling in beta-VAE", Eq. 8):
gamma * |KL - C| with C raised linearly from 0 to ``capacity_max`` nats over ``capacity_fraction``
of the training steps.

Likelihood (``likelihood``): the views are colour photographs with a pasted digit, so the default is
the Gaussian decoder of the paper's Frey Face experiments (Appendix C.2) with a fixed standard
deviation ``decoder_std`` on RGB values in [0, 1]: -log p(x|z) = sum_pixels (x - x_hat)^2 /
(2 sigma^2) + log(sigma sqrt(2 pi)). ``bernoulli`` is the paper's MNIST decoder (binary cross-entropy
per value), commonly used on intensities in [0, 1] too. Every term is summed over the pixels or
latent dimensions of an image and averaged over the batch: ``loss`` is the negative ELBO per image
in nats (for beta-VAE the weighted objective), ``recon_mse`` the mean squared error per value.

Encoder: the method's backbone (the same feature extractor as every other method) followed by
two linear heads for mu and log sigma^2. Decoder: a linear layer to the backbone's last map shape
(side / 8) and three upsampling stages (:class:`~selfsup.models.decoders.ConvDecoder`). Evaluation
runs on the posterior mean mu: the representation the papers analyse and the one beta-VAE's
metric reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.decoders import ConvDecoder
from selfsup.precision import float32_loss
from selfsup.schema import knob

UPSAMPLING_STAGES = 3  # the decoder doubles the side this many times: views.size must divide by 8


@float32_loss
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, in closed form (Kingma & Welling, Appendix B)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) (Sec. 2.4): differentiable in mu and logvar."""
    eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + (0.5 * logvar).exp() * eps


@float32_loss
def gaussian_nll(x_hat: torch.Tensor, x: torch.Tensor, std: float) -> torch.Tensor:
    """-log N(x; x_hat, std^2 I) per image, summed over every value."""
    per_value = (x - x_hat).pow(2) / (2 * std**2) + math.log(std * math.sqrt(2 * math.pi))
    return per_value.flatten(1).sum(dim=1)


@float32_loss
def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x; sigmoid(logits)) per image (binary cross-entropy summed over every value)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def capacity_at(step: int, total_steps: int, capacity_max: float, fraction: float) -> float:
    """Burgess et al.'s target KL C: linear from 0 to ``capacity_max`` over ``fraction`` of the steps."""
    ramp = max(1, int(round(fraction * total_steps)))
    return capacity_max * min(1.0, step / ramp)


class VAE(Method):
    """Gaussian encoder on the backbone, convolutional decoder, one-sample ELBO."""

    name = "vae"
    n_views = 1
    generative = True

    @dataclass(frozen=True)
    class Knobs:
        latent_dim: int = knob(32, ge=1, doc="dimensions of z")
        likelihood: str = knob("gaussian", choices=("gaussian", "bernoulli"), doc="the decoder's p(x|z)")
        decoder_std: float = knob(0.1, gt=0.0, doc="gaussian: the fixed standard deviation of p(x|z) on [0, 1] values")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        side = cfg.views.size
        if side % 2**UPSAMPLING_STAGES:
            raise ConfigError(f"{self.name}: views.size={side} must be a multiple of {2**UPSAMPLING_STAGES} for the "
                              f"decoder's {UPSAMPLING_STAGES} upsampling stages; set -S views.size=16 or 32")
        d, z = self.backbone.feature_dim, self.knobs.latent_dim
        self.mu = nn.Linear(d, z)
        self.logvar = nn.Linear(d, z)
        shape = (d, side // 2**UPSAMPLING_STAGES, side // 2**UPSAMPLING_STAGES)
        self.project = nn.Sequential(nn.Linear(z, math.prod(shape)), nn.ReLU(), nn.Unflatten(1, shape))
        self.decoder = ConvDecoder(d, UPSAMPLING_STAGES)
        # optimiser steps done and planned, kept in checkpoints: the capacity schedule reads them in forward
        self.register_buffer("progress", torch.tensor([0, 1], dtype=torch.long))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, log sigma^2) of normalised images x."""
        h = self.backbone(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output for codes z: Gaussian means or Bernoulli logits (B, 3, s, s)."""
        return self.decoder(self.project(z))

    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        """The decoded image in [0, 1] (the Gaussian mean clamped, or the Bernoulli probabilities)."""
        out = self.decode(z).float()
        return torch.sigmoid(out) if self.knobs.likelihood == "bernoulli" else out.clamp(0, 1)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The decoded posterior mean (no sampling), with mu and the KL per image."""
        mu, logvar = self.encode(x)
        return self.mean_image(mu), {"mu": mu, "kl": gaussian_kl(mu, logvar)}

    def feature_extractor(self) -> nn.Module:
        """The posterior mean mu(x)."""
        return nn.Sequential(self.backbone, self.mu)

    def nll(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.knobs.likelihood == "bernoulli":
            return bernoulli_nll(out, target)
        return gaussian_nll(out, target, self.knobs.decoder_std)

    def objective(self, nll: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """The quantity minimised per batch: the negative ELBO."""
        return (nll + kl).mean()

    def on_step_end(self, step: int, total_steps: int) -> None:
        super().on_step_end(step, total_steps)
        self.progress.copy_(torch.tensor([step + 1, total_steps]))

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        x = views.large[0]
        mu, logvar = self.encode(x)
        z = reparameterise(mu.float(), logvar.float())
        out = self.decode(z)
        target = self.unnormalize(x).float().clamp(0, 1)
        nll, kl = self.nll(out, target), gaussian_kl(mu, logvar)
        image = torch.sigmoid(out.float()) if self.knobs.likelihood == "bernoulli" else out.float()
        losses = {"loss": self.objective(nll, kl), "nll": nll.mean(), "kl": kl.mean(),
                  "recon_mse": F.mse_loss(image.clamp(0, 1), target)}
        return MethodOutput(losses, mu.detach().float())


class BetaVAE(VAE):
    """The VAE with the KL weighted by beta (Higgins et al. Eq. 4), or Burgess et al.'s capacity objective."""

    name = "betavae"

    @dataclass(frozen=True)
    class Knobs(VAE.Knobs):
        beta: float = knob(4.0, gt=0.0, doc="weight of the KL term (Eq. 4); 1 is the VAE")
        capacity: bool = knob(False, doc="Burgess et al. 2018: gamma * |KL - C| with C annealed, instead of beta")
        capacity_max: float = knob(25.0, ge=0.0, doc="capacity: the final C in nats")
        capacity_fraction: float = knob(0.5, gt=0.0, le=1.0, doc="capacity: fraction of the steps C rises over")
        gamma: float = knob(1000.0, gt=0.0, doc="capacity: the weight of |KL - C|")

    def objective(self, nll: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        k = self.knobs
        if k.capacity:
            step, total = (int(v) for v in self.progress)
            c = capacity_at(step, total, k.capacity_max, k.capacity_fraction)
            return (nll + k.gamma * (kl - c).abs()).mean()
        return (nll + k.beta * kl).mean()

    def scheduled_values(self, step: int, total_steps: int) -> dict[str, float]:
        values = super().scheduled_values(step, total_steps)
        if self.knobs.capacity:
            values["capacity"] = capacity_at(step, total_steps, self.knobs.capacity_max, self.knobs.capacity_fraction)
        return values
