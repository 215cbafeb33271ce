"""BYOL: Bootstrap Your Own Latent, a new approach to self-supervised learning.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot, Kavukcuoglu,
Munos, Valko, NeurIPS 2020, https://arxiv.org/abs/2006.07733.

An online network (encoder f, projector g, predictor q) predicts the projection that a target
network (an EMA copy of f and g) makes of the other view. Eq. (2), with l2-normalised vectors,

    L = || q_bar(z_theta) - z'_bar_xi ||^2 = 2 - 2 <q(z_theta), z'_xi> / (||q(z_theta)|| ||z'_xi||),

is symmetrised by feeding each view to both networks (L_total = L + L~, Sec. 3.1) and only the
online network receives its gradient. After each step the target follows xi <- tau xi + (1 - tau)
theta with tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (Sec. 3.2), tau_base = ``momentum``.
The loss has no batch-level term, so DDP needs no all-gather (BatchNorm is global only with
``train.sync_bn``).

The ``norm`` knob: ``bn`` (the paper), ``gn_ws`` (GroupNorm + Weight Standardisation throughout,
Richemond et al., "BYOL works even without batch statistics", 2020, arXiv:2010.10241: the backbone
is built with ``norm: gn_ws`` and the projector / predictor use GroupNorm) or ``none`` (no
normalisation in projector and predictor; the backbone keeps ``backbone.norm``). Richemond et al.
Table 1 reports that BN in the encoder alone keeps BYOL working, and that removing BN everywhere
(``norm: none`` with ``backbone.norm: none``) collapses to chance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.backbones import build_backbone
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schedules import cosine_momentum
from selfsup.schema import knob

HEAD_NORM = {"bn": None, "gn_ws": "gn", "none": "none"}


@float32_loss
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetrised loss (Eq. 2, summed over both view orders), averaged over images.

    Args:
        p: (2n, d) online predictions, view 1 of n images followed by their view 2.
        z: (2n, d) target projections, same layout; detached here (the stop-gradient of Sec. 3.1).

    Returns ``mean_i ||p1_i/|p1_i| - z2_i/|z2_i| ||^2 + ||p2_i/|p2_i| - z1_i/|z1_i| ||^2``, in [0, 8].
    """
    n = p.shape[0] // 2
    p = F.normalize(p, dim=1)
    z = F.normalize(z.detach(), dim=1)
    swapped = torch.cat([z[n:], z[:n]])
    return (p - swapped).pow(2).sum(1).view(2, n).sum(0).mean()


class BYOL(Method):
    """Online backbone + projector + predictor; EMA target backbone + projector.

    EMA of parameters only: the target's BatchNorm statistics are its own (deepmind-research
    byol/byol_experiment.py ``_update_fn``: ``target_params`` follow the online ones, ``target_state``
    comes from the target's own forward).
    """

    name = "byol"

    @dataclass(frozen=True)
    class Knobs:
        momentum: float = knob(0.996, ge=0.0, le=1.0, doc="tau_base: target EMA decay at step 0, "
                                                          "cosine-increased to 1")
        norm: str = knob("bn", choices=tuple(HEAD_NORM), doc="bn: BatchNorm (paper); gn_ws: GroupNorm + weight "
                                                             "standardisation everywhere; none: no norm in "
                                                             "projector and predictor")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        head = cfg.projector if self.knobs.norm == "bn" else dataclasses.replace(cfg.projector, last_bn=False)
        norm = HEAD_NORM[self.knobs.norm]
        self.projector = mlp(self.backbone.feature_dim, head, norm=norm)
        self.predictor = mlp(head.out_dim, dataclasses.replace(head, last_bn=False), norm=norm)
        self.target_backbone = self.momentum_copy(self.backbone, copy_buffers=False)
        self.target_projector = self.momentum_copy(self.projector, copy_buffers=False)

    def build_backbone(self) -> nn.Module:
        """``backbone.norm`` is replaced by ``gn_ws`` when the ``norm`` knob asks for it."""
        backbone = self.cfg.backbone
        if self.knobs.norm == "gn_ws":
            backbone = dataclasses.replace(backbone, norm="gn_ws")
        return build_backbone(backbone, self.cfg.views.size)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        n = views.large[0].shape[0]
        x = torch.cat(views.large)
        z = self.projector(self.backbone(x))
        p = self.predictor(z)
        with torch.no_grad():
            z_target = self.target_projector(self.target_backbone(x))
        loss = byol_loss(p, z_target)
        return MethodOutput({"loss": loss}, z[:n].detach())

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """tau_k of Sec. 3.2: tau_base at step 0, cosine-increased to 1 at step K."""
        return cosine_momentum(self.knobs.momentum, step, total_steps)
