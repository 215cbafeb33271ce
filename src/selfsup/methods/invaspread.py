"""Invariant and Spreading Instance Feature: Unsupervised Embedding Learning via Invariant and
Spreading Instance Feature.

Ye, Zhang, Yuen, Chang, CVPR 2019, https://arxiv.org/abs/1904.03436.

One encoder (Siamese: both views share it) maps a batch of m instances x_i and their augmented
copies x_hat_i to unit 128-d features f_i, f_hat_i. The original features f_k serve as the weights
of an instance classifier, Eq. (2)-(4):

    P(i | x_hat_i) = exp(f_i^T f_hat_i / tau) / sum_k exp(f_k^T f_hat_i / tau),
    P(i | x_j)     = exp(f_i^T f_j / tau)     / sum_k exp(f_k^T f_j / tau),   j != i,

and Eq. (5) asks x_hat_i to be recognised as instance i (invariance) and every other original x_j
not to be (spreading):

    J = - sum_i log P(i | x_hat_i) - sum_i sum_{j != i} log(1 - P(i | x_j)).

Here J is divided by m (a per-instance mean), and both views are augmented (the paper's x_i is
itself an augmented image in its reference code). Under DDP the classifier weights f_k are the
global batch, all-gathered with gradient, so the sums over k and i run over every rank's images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob


@float32_loss
def invariance_spreading_loss(f: torch.Tensor, f_hat: torch.Tensor, weights: torch.Tensor | None = None,
                              offset: int = 0, temperature: float = 0.1) -> torch.Tensor:
    """Ye et al. Eq. (5) for the local instances, divided by their number.

    Args:
        f: (b, d) unit features of the local original views x_j.
        f_hat: (b, d) unit features of their augmented copies x_hat_i.
        weights: (M, d) the original features of the whole (global) batch in rank order, the
            classifier weights f_k; defaults to ``f`` (one process).
        offset: index of ``f[0]`` within ``weights`` (``rank * b``).
        temperature: tau.

    Each local row contributes -log P(i | x_hat_i) for its own instance, and -log(1 - P(i | x_j))
    for every other instance i of the global batch; grouping Eq. (5)'s double sum by the query x_j
    this way makes the mean over ranks equal the single-process loss on the global batch.
    """
    if weights is None:
        weights = f
    b = f.shape[0]
    own = offset + torch.arange(b, device=f.device)
    invariance = F.cross_entropy(f_hat @ weights.T / temperature, own, reduction="sum")
    p = torch.softmax(f @ weights.T / temperature, dim=1)
    others = ~F.one_hot(own, weights.shape[0]).bool()
    spreading = -torch.log1p(-p[others]).sum()
    return (invariance + spreading) / b


class InvaSpread(Method):
    """Backbone + linear 128-d embedding (l2-normalised); in-batch instance softmax of two views."""

    name = "invaspread"

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.1, gt=0.0, doc="tau of the instance softmax (Eq. 3-4)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        n = views.large[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views.large)))
        with torch.autocast(z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=1)
            f, f_hat = z[:n], z[n:]
            weights = dist.gather_with_grad(f)
            loss = invariance_spreading_loss(f, f_hat, weights, offset=dist.rank() * n,
                                             temperature=self.knobs.temperature)
        return MethodOutput({"loss": loss}, f.detach())
