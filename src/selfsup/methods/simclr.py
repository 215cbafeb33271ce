"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations.

Chen, Kornblith, Norouzi, Hinton, ICML 2020, https://arxiv.org/abs/2002.05709.

Implements the NT-Xent objective of Eq. (1) and Algorithm 1: for a positive pair (i, j) among
the 2N augmented views of a batch,

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),

with sim the cosine similarity, averaged over all 2N anchors. Under DDP the candidates k range
over the global batch (all-gathered with gradient), as in the paper's global negatives.

The ``objective`` knob swaps in the two alternatives of Table 2 (Sec. 5.1), written there as
negative losses of an l2-normalised anchor u, its positive v+ and a negative v-:

    NT-Logistic:     log sigmoid(u.v+ / tau) + log sigmoid(-u.v- / tau),
    Margin triplet:  -max(u.v- - u.v+ + m, 0).

Every anchor is paired with its one positive and each of the 2N - 2 views of other images in the
(global) batch, the same candidates as NT-Xent; the per-anchor loss averages the Table 2 term
over those negatives, so the positive and the negatives carry equal total weight per anchor.
Appendix B.10 tuned these losses with negatives from one augmentation view only and Table 4 also
reports semi-hard negative mining; neither is done here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob

OBJECTIVES = ("nt_xent", "nt_logistic", "margin_triplet")


@float32_loss
def nt_xent(z: torch.Tensor, candidates: torch.Tensor | None = None, offset: int = 0,
            temperature: float = 0.5, hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent (SimCLR Eq. 1) averaged over the anchors in ``z``.

    Args:
        z: (2n, d) local embeddings, the first view of n images followed by their second view.
        candidates: (2nW, d) the embeddings of every rank stacked in rank order, each rank's block
            laid out like ``z``; defaults to ``z`` (one process).
        offset: index of ``z[0]`` within ``candidates`` (``rank * 2n``).
        temperature: tau.
        hard_negatives: optional (n, d) one extra negative per image (BG_Swaps, Ryali et al. 2021),
            added to the denominator of both of that image's anchors.
    """
    if candidates is None:
        candidates = z
    two_n = z.shape[0]
    n = two_n // 2
    z = F.normalize(z, dim=1)
    candidates = F.normalize(candidates, dim=1)
    logits = z @ candidates.T / temperature
    local = torch.arange(two_n, device=z.device)
    self_idx = offset + local
    positive_idx = offset + (local + n) % two_n
    logits = logits.masked_fill(F.one_hot(self_idx, candidates.shape[0]).bool(), float("-inf"))
    if hard_negatives is not None:
        hard = (z * F.normalize(hard_negatives, dim=1).repeat(2, 1)).sum(1, keepdim=True) / temperature
        logits = torch.cat([logits, hard], 1)
    return F.cross_entropy(logits, positive_idx)


def _positives_and_negatives(z: torch.Tensor, candidates: torch.Tensor | None,
                             offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine similarities of each anchor to its positive (2n,), to all candidates (2n, M), and the
    (2n, M) mask of its negatives (every candidate but itself and its positive); layout as ``nt_xent``."""
    if candidates is None:
        candidates = z
    two_n = z.shape[0]
    n = two_n // 2
    sim = F.normalize(z, dim=1) @ F.normalize(candidates, dim=1).T
    local = torch.arange(two_n, device=z.device)
    positive_idx = offset + (local + n) % two_n
    not_negative = (F.one_hot(offset + local, candidates.shape[0])
                    + F.one_hot(positive_idx, candidates.shape[0])).bool()
    return sim.gather(1, positive_idx[:, None]).squeeze(1), sim, ~not_negative


@float32_loss
def nt_logistic(z: torch.Tensor, candidates: torch.Tensor | None = None, offset: int = 0,
                temperature: float = 0.5) -> torch.Tensor:
    """NT-Logistic (SimCLR Table 2), as a loss averaged over the anchors in ``z``.

    Per anchor u: ``-log sigmoid(u.v+ / tau) - mean_{v-} log sigmoid(-u.v- / tau)`` over its 2n'-2
    negatives (n' images in the global batch). Arguments as :func:`nt_xent`.
    """
    positive, sim, negative = _positives_and_negatives(z, candidates, offset)
    negative_term = (F.softplus(sim / temperature) * negative).sum(1) / negative.sum(1)
    return (F.softplus(-positive / temperature) + negative_term).mean()


@float32_loss
def margin_triplet(z: torch.Tensor, candidates: torch.Tensor | None = None, offset: int = 0,
                   margin: float = 0.4) -> torch.Tensor:
    """Margin triplet loss (SimCLR Table 2), averaged over anchors and their negatives.

    Per anchor u: ``mean_{v-} max(u.v- - u.v+ + m, 0)`` on l2-normalised vectors (no temperature).
    Arguments as :func:`nt_xent`; ``margin`` is m.
    """
    positive, sim, negative = _positives_and_negatives(z, candidates, offset)
    hinge = F.relu(sim - positive[:, None] + margin) * negative
    return (hinge.sum(1) / negative.sum(1)).mean()


class SimCLR(Method):
    """Backbone + MLP projector g(.); a contrastive objective on the projections of two views."""

    name = "simclr"
    hard_negatives = True

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.5, gt=0.0, doc="NT-Xent / NT-Logistic temperature tau")
        objective: str = knob("nt_xent", choices=OBJECTIVES, doc="Table 2 objective: nt_xent, nt_logistic "
                                                                  "or margin_triplet")
        margin: float = knob(0.4, ge=0.0, doc="margin_triplet: margin m on cosine similarities")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        if cfg.views.background.swaps > 0 and self.knobs.objective != "nt_xent":
            raise ConfigError(f"views.background.swaps={cfg.views.background.swaps} adds hard negatives to "
                              f"NT-Xent only, not objective={self.knobs.objective!r}; set -S objective=nt_xent")

    def objective(self, z: torch.Tensor, candidates: torch.Tensor, offset: int) -> torch.Tensor:
        """The loss the ``objective`` knob names (each computes in float32)."""
        k = self.knobs
        if k.objective == "nt_logistic":
            return nt_logistic(z, candidates, offset, k.temperature)
        if k.objective == "margin_triplet":
            return margin_triplet(z, candidates, offset, k.margin)
        return nt_xent(z, candidates, offset, k.temperature)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        hard = views.hard_negative
        n = views.large[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views.large + ([hard] if hard is not None else []))))
        z, z_hard = z[: 2 * n], (z[2 * n :] if hard is not None else None)
        everything = dist.gather_with_grad(z)
        offset = dist.rank() * z.shape[0]
        if z_hard is not None:
            loss = nt_xent(z, everything, offset, self.knobs.temperature, z_hard)
        else:
            loss = self.objective(z, everything, offset)
        return MethodOutput({"loss": loss}, z[:n].detach())
