"""SimCLR v2: Big Self-Supervised Models are Strong Semi-Supervised Learners.

Chen, Kornblith, Swersky, Norouzi, Hinton, NeurIPS 2020, https://arxiv.org/abs/2006.10029.

Sec. 2 ("Self-supervised pretraining with SimCLRv2") changes SimCLR in three ways, implemented here:

1. The NT-Xent loss of SimCLR Eq. (1) (:func:`selfsup.methods.simclr.nt_xent`) with temperature 0.1
   (the authors' pretraining command in the official repository; Sec. 3 lists the other settings).
2. A deeper projection head g(.): three layers (``projector.layers``), each hidden one Linear +
   BatchNorm + ReLU, the output Linear followed by BatchNorm (``projector.last_bn``), and fine-tuning
   "from the middle layer of the projection head" instead of from the encoder output. The
   ``eval_from_layer`` knob picks how many projector blocks the evaluated representation keeps:
   0 = the backbone, 1 = backbone + first block (the paper's choice), and so on.
3. The memory mechanism of MoCo (He et al. 2020): a momentum (EMA) copy of backbone + projector
   whose outputs serve as keys. With ``momentum_encoder: true`` every anchor's positive and
   negatives are the momentum encoder's projections of the batch's views (all-gathered under DDP),
   queries come from the online network: NT-Xent with keys k,

       l(i, j) = -log( exp(sim(q_i, k_j) / tau) / sum_{c != i} exp(sim(q_i, k_c) / tau) ).

   The paper additionally buffers 64K past keys as extra negatives; no queue is kept here, so the
   negatives are the current (global) batch's keys, and the key encoder is updated after every
   step with theta_k <- m theta_k + (1 - m) theta_q, m = ``momentum`` (0.999, Sec. 3).

The official code's output BatchNorm keeps its scale (no centring); ``projector.last_bn`` here is
affine-free (neither scale nor centring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.methods.simclr import nt_xent
from selfsup.models.heads import mlp
from selfsup.schema import knob


def projector_blocks(head: nn.Sequential) -> nn.Sequential:
    """Regroup an MLP's modules into blocks that each start at a Linear (Linear + norm + ReLU)."""
    blocks: list[list[nn.Module]] = []
    for module in head:
        if isinstance(module, nn.Linear):
            blocks.append([])
        blocks[-1].append(module)
    return nn.Sequential(*(nn.Sequential(*b) for b in blocks))


class SimCLRv2(Method):
    """Backbone + 3-layer projector; NT-Xent, optionally against a momentum encoder's keys.

    The momentum encoder is an EMA of parameters only, its BatchNorm statistics its own: the released
    code (google-research/simclr tf2) has no momentum encoder, so MoCo's is followed
    (facebookresearch/moco moco/builder.py ``_momentum_update_key_encoder``).
    """

    name = "simclrv2"

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.1, gt=0.0, doc="NT-Xent temperature tau")
        eval_from_layer: int = knob(1, ge=0, le=3, doc="projector blocks kept in the evaluated representation "
                                                       "(0: backbone only; < projector.layers)")
        momentum_encoder: bool = knob(False, doc="keys (positives and negatives) from an EMA copy of "
                                                 "backbone + projector")
        momentum: float = knob(0.999, ge=0.0, le=1.0, doc="EMA decay m of the momentum encoder")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        if self.knobs.eval_from_layer >= cfg.projector.layers:
            raise ConfigError(f"eval_from_layer={self.knobs.eval_from_layer} must be below projector.layers="
                              f"{cfg.projector.layers} (0 evaluates the backbone itself)")
        self.projector = projector_blocks(mlp(self.backbone.feature_dim, cfg.projector))
        if self.knobs.momentum_encoder:
            self.key_backbone = self.momentum_copy(self.backbone, copy_buffers=False)
            self.key_projector = self.momentum_copy(self.projector, copy_buffers=False)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        x = torch.cat(views.large)
        z = self.projector(self.backbone(x))
        if self.knobs.momentum_encoder:
            with torch.no_grad():
                keys = self.key_projector(self.key_backbone(x))
        else:
            keys = z
        candidates = dist.gather_with_grad(keys)
        loss = nt_xent(z, candidates, offset=dist.rank() * z.shape[0],
                       temperature=self.knobs.temperature)
        return MethodOutput({"loss": loss}, z[: views.large[0].shape[0]].detach())

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """m of the momentum encoder, constant (Sec. 3)."""
        return self.knobs.momentum

    def feature_extractor(self) -> nn.Module:
        """The backbone followed by the first ``eval_from_layer`` projector blocks."""
        return nn.Sequential(self.backbone, *self.projector[: self.knobs.eval_from_layer])
