"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers.

Chen, Xie, He, ICCV 2021, https://arxiv.org/abs/2104.02057.

Implements Algorithm 1: a base encoder f_q (backbone + projector + predictor) and a momentum
encoder f_k (backbone + projector, updated as f_k = m f_k + (1 - m) f_q), no queue; the keys of
the current batch are the negatives. For two views x1, x2 of N images,

    ctr(q, k) = CrossEntropy(q k^T / tau, labels = arange(N)) * 2 tau,
    L = ctr(q1, k2) + ctr(q2, k1),

with q and k l2-normalised. Under DDP the keys are all-gathered (no gradient) so the logits of
rank r's B queries run over the keys of the global batch and the positive of local query n is
key r * B + n, as in the reference code. The momentum follows a cosine from ``momentum`` (0.99)
to 1 (Sec. 5, after BYOL). The stability trick of Sec. 4.2: the random patch projection of a
ViT is frozen (``freeze_patch_embed``); a ViT also gets the reference code's initialisation and
the fixed 2-D sin-cos positional embedding of Sec. 5 (``sincos_pos_embed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.config.image import ProjectorConfig
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.models.vit import VisionTransformer
from selfsup.precision import float32_loss
from selfsup.schedules import cosine_momentum
from selfsup.schema import knob

log = logging.getLogger(__name__)


@float32_loss
def mocov3_ctr(q: torch.Tensor, k: torch.Tensor, offset: int = 0, temperature: float = 0.2) -> torch.Tensor:
    """``ctr`` of MoCo v3 Algorithm 1: InfoNCE of queries against a batch of keys, scaled by 2 tau.

    Args:
        q: (B, d) local queries (l2-normalised here).
        k: (M, d) keys of the global batch, every rank's block in rank order (l2-normalised here).
        offset: index in ``k`` of the positive of ``q[0]`` (``rank * B``).
        temperature: tau.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    labels = offset + torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(q @ k.T / temperature, labels) * (2 * temperature)


@float32_loss
def mocov3_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, offset: int = 0,
                temperature: float = 0.2) -> torch.Tensor:
    """The symmetrised loss of MoCo v3 Algorithm 1: ctr(q1, k2) + ctr(q2, k1)."""
    return mocov3_ctr(q1, k2, offset, temperature) + mocov3_ctr(q2, k1, offset, temperature)


class MoCoV3(Method):
    """Backbone + projector + predictor against a momentum backbone + projector; no queue.

    The predictor is a 2-layer MLP (``predictor_hidden_dim`` wide) whose hidden BatchNorm follows
    ``projector.hidden_bn``, like the projector's. The momentum encoder is an EMA of parameters
    only: its BatchNorm statistics are its own (facebookresearch/moco-v3 moco/builder.py
    ``_update_momentum_encoder`` loops over ``parameters()``).
    """

    name = "mocov3"

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.2, gt=0.0, doc="tau of ctr (Algorithm 1)")
        momentum: float = knob(0.99, ge=0.0, le=1.0, doc="base momentum m, raised to 1 by a cosine")
        predictor_hidden_dim: int = knob(4096, ge=1, doc="hidden width of the 2-layer predictor")
        predictor_last_bn: bool = knob(True, doc="affine-free BN after the predictor's output (ViT code; "
                                                 "the ResNet code has none)")
        freeze_patch_embed: bool = knob(True, doc="ViT: keep the random patch projection fixed (Sec. 4.2); "
                                                  "ignored, with a warning, for convolutional backbones")
        sincos_pos_embed: bool = knob(True, doc="ViT: fixed 2-D sin-cos positional embedding instead of a "
                                                "learned one")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        if isinstance(self.backbone, VisionTransformer):
            self.backbone.init_mocov3_(sincos=k.sincos_pos_embed)
            if k.freeze_patch_embed:
                self.backbone.patch_embed.requires_grad_(False)
        elif k.freeze_patch_embed:
            log.warning("freeze_patch_embed=true is ignored: backbone %r has no patch projection "
                        "(set -S freeze_patch_embed=false to silence this)", cfg.backbone.name)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        self.predictor = mlp(cfg.projector.out_dim, ProjectorConfig(
            layers=2, hidden_dim=k.predictor_hidden_dim, out_dim=cfg.projector.out_dim,
            hidden_bn=cfg.projector.hidden_bn, last_bn=k.predictor_last_bn))
        self.key_backbone = self.momentum_copy(self.backbone, copy_buffers=False)
        self.key_projector = self.momentum_copy(self.projector, copy_buffers=False)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        x1, x2 = views.large
        q1 = self.predictor(self.projector(self.backbone(x1)))
        q2 = self.predictor(self.projector(self.backbone(x2)))
        with torch.no_grad():
            k1 = dist.gather_with_grad(self.key_projector(self.key_backbone(x1)))
            k2 = dist.gather_with_grad(self.key_projector(self.key_backbone(x2)))
        loss = mocov3_loss(q1, q2, k1, k2, offset=dist.rank() * x1.shape[0],
                           temperature=self.knobs.temperature)
        return MethodOutput({"loss": loss}, q1.detach())

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """The momentum applied after optimiser step ``step``: that of the reference code's update
        before the keys of step ``step + 1``."""
        return cosine_momentum(self.knobs.momentum, step + 1, total_steps)
