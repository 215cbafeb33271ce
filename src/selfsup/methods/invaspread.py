"""Invariant and Spreading Instance Feature: Unsupervised Embedding Learning via Invariant and
Spreading Instance Feature.

Ye, Zhang, Yuen, Chang, CVPR 2019, https://arxiv.org/abs/1904.03436.

One encoder (Siamese: both views share it) maps a batch of m instances x_i and their augmented
copies x_hat_i to unit 128-d features. The batch's own features serve as the weights of an
instance classifier, Eq. (2)-(4), P(i | x) = exp(f_i^T f_x / tau) / sum_k exp(f_k^T f_x / tau),
and Eq. (5) asks each feature to be recognised as its own instance (invariance) and not as any
other (spreading):

    J = - sum_i log P(i | x_hat_i) - sum_i sum_{j != i} log(1 - P(i | x_j)).

As in the reference code (``BatchAverage.py``, ``BatchCriterion`` with m = 1), every one of the 2m
features is an anchor; its candidates are the other 2m - 1 features of the batch (itself excluded),
one of which, its other view, is the positive; the classifier weights (the candidates) are
constants (``feat.data``); and the loss is divided by the 2m anchors:

    L = -1/(2m) sum_a [ log P(pos(a) | a) + sum_{j not in {a, pos(a)}} log(1 - P(j | a)) ],
    P(j | a) = exp(f_j^T f_a / tau) / sum_{k != a} exp(f_k^T f_a / tau).

Keeping the anchor itself in the denominator (exp(1 / tau), about 22,000 at tau = 0.1) would make
every P(j | a) of another instance tiny and the spreading term nearly inert. Under DDP the
candidates are the global batch (all-gathered, without gradient), each rank's anchors are its own
features, and the mean over ranks equals the single-process loss on the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss, full_precision
from selfsup.schema import knob


@float32_loss
def invariance_spreading_loss(z: torch.Tensor, candidates: torch.Tensor | None = None, offset: int = 0,
                              temperature: float = 0.1) -> torch.Tensor:
    """Ye et al. Eq. (5) in the reference code's form, averaged over the anchors.

    Args:
        z: (2b, d) unit features of this process's anchors, the first views of its b images then
            their second views: the positive of row a is row (a + b) mod 2b.
        candidates: (2B, d) unit features of the global batch in rank order, each rank's block laid
            out like ``z``; defaults to ``z`` (one process). Used as constants (no gradient).
        offset: index of ``z[0]`` within ``candidates`` (``rank * 2b``).
        temperature: tau.
    """
    if candidates is None:
        candidates = z
    n = z.shape[0]
    rows = torch.arange(n, device=z.device)
    own = F.one_hot(offset + rows, candidates.shape[0]).bool()
    positive = F.one_hot(offset + (rows + n // 2) % n, candidates.shape[0]).bool()
    logits = (z @ candidates.detach().T / temperature).masked_fill(own, float("-inf"))
    log_p = torch.log_softmax(logits, dim=1)
    invariance = -log_p[positive].sum()
    spreading = -torch.log1p(-log_p[~(own | positive)].exp()).sum()
    return (invariance + spreading) / n


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
        with full_precision(z):
            z = F.normalize(z.float(), dim=1)
            candidates = dist.gather_detached(z)
            loss = invariance_spreading_loss(z, candidates, offset=dist.rank() * 2 * n,
                                             temperature=self.knobs.temperature)
        return MethodOutput({"loss": loss}, z[:n].detach())
