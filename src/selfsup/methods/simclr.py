"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations.

Chen, Kornblith, Norouzi, Hinton, ICML 2020, https://arxiv.org/abs/2002.05709.

Implements the NT-Xent objective of Eq. (1) and Algorithm 1: for a positive pair (i, j) among
the 2N augmented views of a batch,

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),

with sim the cosine similarity, averaged over all 2N anchors. Under DDP the candidates k range
over the global batch (all-gathered with gradient), as in the paper's global negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput
from selfsup.models.heads import mlp
from selfsup.schema import knob


def nt_xent(z: torch.Tensor, candidates: torch.Tensor | None = None, offset: int = 0,
            temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR Eq. 1) averaged over the anchors in ``z``.

    Args:
        z: (2n, d) local embeddings, the first view of n images followed by their second view.
        candidates: (2nW, d) the embeddings of every rank stacked in rank order, each rank's block
            laid out like ``z``; defaults to ``z`` (one process).
        offset: index of ``z[0]`` within ``candidates`` (``rank * 2n``).
        temperature: tau.
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
    return F.cross_entropy(logits, positive_idx)


class SimCLR(Method):
    """Backbone + MLP projector g(.); NT-Xent on the projections of two views."""

    name = "simclr"

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.5, gt=0.0, doc="NT-Xent temperature tau")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)

    def forward(self, views: list[torch.Tensor], index: torch.Tensor) -> MethodOutput:
        x = torch.cat(views[:2])
        z = self.projector(self.backbone(x))
        everything = dist.gather_with_grad(z)
        loss = nt_xent(z, everything, offset=dist.rank() * z.shape[0], temperature=self.knobs.temperature)
        return MethodOutput({"loss": loss}, z[: views[0].shape[0]].detach())
