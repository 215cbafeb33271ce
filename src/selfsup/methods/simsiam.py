"""SimSiam: Exploring Simple Siamese Representation Learning.

Chen, He, CVPR 2021, https://arxiv.org/abs/2011.10566.

One encoder f (backbone + projection MLP) is shared by both views; a prediction MLP h maps one
view's projection z to the other's. With D the negative cosine similarity (Eq. 1),

    D(p1, z2) = - p1 / ||p1|| . z2 / ||z2||,

the loss is the symmetrised Eq. (4), L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2, where
the stop-gradient (Eq. 3) treats z as a constant. ``stop_gradient: false`` gives the ablation of
Sec. 4.1 / Fig. 2 (Eq. 2 with gradients through z), which collapses: the std of the l2-normalised
projections (the collapse diagnostic, computed on z) drops towards 0. The output BatchNorm of the
projector (``projector.last_bn``) standardises every dimension of z over the batch, which holds
that std up: on small digits-bg runs it then falls only to ~0.4/sqrt(d), against ~0.03/sqrt(d)
with ``last_bn: false`` (tests/methods/test_simsiam_collapse.py).

Projector (Sec. 3 "Baseline settings"): 3 Linear layers, BN on each including the output (no ReLU
after it); the CIFAR variant (Appendix D) has 2. Predictor: Linear(d, 512) + BN + ReLU +
Linear(512, d), a bottleneck with no BN on its output. With ``fix_predictor_lr`` (the default, as
in the released code's reported runs, ``--fix-pred-lr``) the predictor keeps the peak learning rate
while the rest follows the schedule (Sec. 4.2, Table 1c).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import Config
from selfsup.config.image import ProjectorConfig
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob


@float32_loss
def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 stop_gradient: bool = True) -> torch.Tensor:
    """SimSiam Eq. (4): D(p1, sg(z2))/2 + D(p2, sg(z1))/2, D = -cos, averaged over the batch.

    With ``stop_gradient=False`` the gradient also flows through ``z1`` and ``z2`` (Eq. 2).
    """
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return -(F.cosine_similarity(p1, z2, dim=1).mean() + F.cosine_similarity(p2, z1, dim=1).mean()) / 2


class SimSiam(Method):
    """Shared backbone + projector, a bottleneck predictor, and a stop-gradient on the projections."""

    name = "simsiam"

    @dataclass(frozen=True)
    class Knobs:
        stop_gradient: bool = knob(True, doc="stop the gradient through z (false: the collapsing ablation)")
        predictor_hidden_dim: int = knob(512, ge=1, doc="width of the predictor's bottleneck layer")
        fix_predictor_lr: bool = knob(True, doc="the predictor keeps the peak learning rate while the rest "
                                                "decays (Sec. 4.2 / main_simsiam.py --fix-pred-lr)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        d = cfg.projector.out_dim
        self.predictor = mlp(d, ProjectorConfig(layers=2, hidden_dim=self.knobs.predictor_hidden_dim, out_dim=d,
                                                hidden_bn=True, last_bn=False))

    def fixed_lr_modules(self) -> list[nn.Module]:
        """The predictor with ``fix_predictor_lr``: Sec. 4.2 finds a predictor with a constant
        learning rate works well, and the released code's reported runs use it."""
        return [self.predictor] if self.knobs.fix_predictor_lr else []

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        n = views.large[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views.large)))
        p = self.predictor(z)
        z, p = z.float(), p.float()
        loss = simsiam_loss(p[:n], p[n:], z[:n], z[n:], self.knobs.stop_gradient)
        return MethodOutput({"loss": loss}, z[:n].detach())
