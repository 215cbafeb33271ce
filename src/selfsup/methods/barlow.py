"""Barlow Twins: Self-Supervised Learning via Redundancy Reduction.

Zbontar, Jing, Misra, LeCun, Deny, ICML 2021, https://arxiv.org/abs/2103.03230.

Implements Eq. (1)-(2): with embeddings standardised along the batch dimension,

    C_ij = sum_b z^A_{b,i} z^B_{b,j} / N,
    L_BT = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2.

Under DDP the cross-correlation is computed over the global batch (embeddings all-gathered
with gradient), matching the paper's global batch normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension (z - mean) / sqrt(var + eps) over the batch (biased var, like BatchNorm)."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


@float32_loss
def barlow_twins(z_a: torch.Tensor, z_b: torch.Tensor, lambda_: float = 5.1e-3) -> torch.Tensor:
    """Barlow Twins loss (Eq. 1) for embeddings ``z_a``, ``z_b`` of shape (N, D)."""
    n = z_a.shape[0]
    c = standardize(z_a).T @ standardize(z_b) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambda_ * off_diag


class BarlowTwins(Method):
    """Backbone + projector; the cross-correlation of the two views' embeddings is pushed to I."""

    name = "barlow"

    @dataclass(frozen=True)
    class Knobs:
        lambda_: float = knob(5.1e-3, gt=0.0, key="lambda", doc="weight of the off-diagonal term")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        n = views.large[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views.large)))
        z_a = dist.gather_with_grad(z[:n])
        z_b = dist.gather_with_grad(z[n:])
        loss = barlow_twins(z_a, z_b, self.knobs.lambda_)
        return MethodOutput({"loss": loss}, z[:n].detach())
