"""DINO: Emerging Properties in Self-Supervised Vision Transformers.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, ICCV 2021, https://arxiv.org/abs/2104.14294.

Self-distillation with no labels (Sec. 3.1, Algorithm 1). A student g_s (backbone + DINO head)
and a teacher g_t, the exponential moving average of the student (theta_t <- lambda theta_t +
(1 - lambda) theta_s, lambda following a cosine from 0.996 to 1), output K-dimensional logits.
The teacher sees the two global crops, the student every crop (multi-crop, Sec. 3.1); with

    P_t(x) = softmax((g_t(x) - c) / tau_t),    P_s(x) = softmax(g_s(x) / tau_s),

the loss (Eq. 3) is min sum_{x in {x1_g, x2_g}} sum_{x' in V, x' != x} H(P_t(x), P_s(x')),
H(a, b) = -a log b, averaged over the pairs as in Algorithm 1. The centre (Eq. 4) is an EMA of
the teacher's batch mean, c <- m c + (1 - m) mean_i g_t(x_i), over the global batch under DDP;
the teacher temperature warms up linearly from 0.04 to 0.07 over the first 30 epochs (Sec. 4.1).

The DINO head (Sec. 3.1 / Appendix) is a 3-layer MLP (hidden 2048, GELU, bottleneck 256), l2
normalisation, and a weight-normalised linear layer to K dimensions whose norm g is fixed to 1
(``norm_last_layer``). As in the released code, that last layer is frozen during the first
epoch (``freeze_last_layer``) and each student parameter's gradient norm is clipped to
``clip_grad``. Evaluation uses the teacher's backbone (the paper evaluates the teacher).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from selfsup import dist
from selfsup.config import Config
from selfsup.config.image import ProjectorConfig
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.backbones import build_backbone
from selfsup.models.heads import norm_1d
from selfsup.precision import float32_loss
from selfsup.schedules import cosine_momentum
from selfsup.schema import knob


@float32_loss
def dino_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO's cross-entropy (Eq. 3 and Algorithm 1) between teacher and student crops.

    Args:
        student_out: per crop (global ones first), the student's (B, K) logits g_s(x').
        teacher_out: per global crop, the teacher's (B, K) logits g_t(x); no gradient flows to it.
        center: (K,) centre c subtracted from the teacher logits.
        student_temp: tau_s; teacher_temp: tau_t (sharpening).

    Returns the mean over the pairs (teacher crop i, student crop v != i) of the batch mean of
    H(P_t, P_s) = -sum_k P_t log P_s.
    """
    total = student_out[0].new_zeros(())
    terms = 0
    for i, t in enumerate(teacher_out):
        p_t = F.softmax((t.detach() - center) / teacher_temp, dim=-1)
        for v, s in enumerate(student_out):
            if v == i:
                continue
            total = total + (-p_t * F.log_softmax(s / student_temp, dim=-1)).sum(dim=-1).mean()
            terms += 1
    return total / terms


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """DINO's centre update (Eq. 4): m c + (1 - m) times the teacher's batch mean.

    ``teacher_out`` (N, K) holds the teacher logits of every global crop of this process's batch;
    under DDP the mean is over the global batch (every process holds the same N rows).
    """
    batch_mean = dist.all_reduce_mean(teacher_out.detach().float().mean(dim=0))
    return center * momentum + batch_mean * (1 - momentum)


def teacher_temperature(epoch: int, warmup_temp: float = 0.04, final_temp: float = 0.07,
                        warmup_epochs: int = 30) -> float:
    """tau_t of ``epoch`` (Sec. 4.1): linear from ``warmup_temp`` (epoch 0) to ``final_temp``
    (epoch ``warmup_epochs - 1``), then constant; the released code's per-epoch
    ``np.linspace(warmup_temp, final_temp, warmup_epochs)`` schedule."""
    if epoch >= warmup_epochs:
        return final_temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (final_temp - warmup_temp) * epoch / (warmup_epochs - 1)


class DINOHead(nn.Module):
    """MLP (``cfg.layers`` linear layers, GELU, BatchNorm if ``cfg.hidden_bn``) to a bottleneck of
    ``cfg.out_dim``, l2 normalisation, then a weight-normalised bias-free layer to ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int, cfg: ProjectorConfig, norm_last_layer: bool = True) -> None:
        super().__init__()
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.layers - 1) + [cfg.out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < cfg.layers - 1:
                if cfg.hidden_bn:
                    layers.append(norm_1d("bn", b))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(cfg.out_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The l2-normalised MLP output (float32), the input of the last layer."""
        return F.normalize(self.mlp(x).float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.bottleneck(x))


def clip_gradients_(module: nn.Module, max_norm: float) -> None:
    """Scale each parameter's gradient down to norm ``max_norm`` if above it (DINO's clip_gradients)."""
    for p in module.parameters():
        if p.grad is not None:
            p.grad.mul_(torch.clamp(max_norm / (p.grad.norm() + 1e-6), max=1.0))


class DINO(Method):
    """Student backbone + DINO head, EMA teacher, centring and sharpening of the teacher's output.

    The teacher is an EMA of the student's parameters only; its BatchNorm statistics are its own
    (facebookresearch/dino main_dino.py, "EMA update for the teacher": ``student.module.parameters()``
    into ``teacher_without_ddp.parameters()``).
    """

    name = "dino"
    multi_crop = True

    @dataclass(frozen=True)
    class Knobs:
        out_dim: int = knob(65536, ge=2, doc="K, the output dimension of the DINO head's last layer")
        norm_last_layer: bool = knob(True, doc="fix the weight norm g of the last layer to 1")
        momentum: float = knob(0.996, ge=0.0, le=1.0, doc="teacher EMA rate at step 0, cosine to 1")
        center_momentum: float = knob(0.9, ge=0.0, lt=1.0, doc="m of the centre's EMA (Eq. 4)")
        student_temp: float = knob(0.1, gt=0.0, doc="tau_s")
        teacher_temp: float = knob(0.07, gt=0.0, doc="tau_t after its warm-up")
        warmup_teacher_temp: float = knob(0.04, gt=0.0, doc="tau_t at epoch 0")
        warmup_teacher_temp_epochs: int = knob(30, ge=0, doc="epochs of tau_t's linear warm-up")
        freeze_last_layer: int = knob(1, ge=0, doc="epochs during which the head's last layer gets no update")
        clip_grad: float = knob(3.0, ge=0.0, doc="per-parameter gradient norm clip; 0 turns it off")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        self.head = DINOHead(self.backbone.feature_dim, k.out_dim, cfg.projector, k.norm_last_layer)
        # The teacher is the same network without stochastic depth, started from the student's weights.
        self.teacher_backbone = self.momentum_copy(self.backbone, copy_buffers=False, target=build_backbone(
            dataclasses.replace(cfg.backbone, drop_path=0.0), cfg.views.size))
        self.teacher_head = self.momentum_copy(self.head, copy_buffers=False, target=DINOHead(
            self.backbone.feature_dim, k.out_dim, cfg.projector, k.norm_last_layer))
        self.steps_per_epoch = max(1, info.n_images // cfg.batch_size)
        self.register_buffer("center", torch.zeros(k.out_dim))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def teacher_temp(self, step: int) -> float:
        """tau_t at optimiser step ``step``: the warm-up schedule at that step's epoch."""
        k = self.knobs
        return teacher_temperature(step // self.steps_per_epoch, k.warmup_teacher_temp, k.teacher_temp,
                                   k.warmup_teacher_temp_epochs)

    def scheduled_values(self, step: int, total_steps: int) -> dict[str, float]:
        """The teacher EMA's momentum and the teacher temperature tau_t at ``step``."""
        return {**super().scheduled_values(step, total_steps), "teacher_temp": self.teacher_temp(step)}

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        k = self.knobs
        n = views.large[0].shape[0]
        feats = [self.backbone(torch.cat(views.large))]
        if views.small:
            feats.append(self.backbone(torch.cat(views.small)))
        bottleneck = self.head.bottleneck(torch.cat(feats))
        with torch.no_grad():
            teacher_bottleneck = self.teacher_head.bottleneck(self.teacher_backbone(torch.cat(views.large)))
        with torch.autocast(bottleneck.device.type, enabled=False):  # float32 logits: tau_t = 0.04 sharpens them
            student = self.head.last_layer(bottleneck)
            with torch.no_grad():
                teacher = self.teacher_head.last_layer(teacher_bottleneck)
        temp = self.teacher_temp(int(self.steps_done))
        loss = dino_loss(list(student.split(n)), list(teacher.split(n)), self.center, k.student_temp, temp)
        self.center.copy_(update_center(self.center, teacher, k.center_momentum))
        return MethodOutput({"loss": loss}, bottleneck[:n].detach())

    def on_after_backward(self, step: int, total_steps: int) -> None:
        """Clip the student's gradients, and drop the last layer's during the first epochs."""
        if self.knobs.clip_grad > 0:
            clip_gradients_(self.backbone, self.knobs.clip_grad)
            clip_gradients_(self.head, self.knobs.clip_grad)
        if step // self.steps_per_epoch < self.knobs.freeze_last_layer:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """lambda of the teacher EMA at this step: a cosine from ``momentum`` to 1 (Sec. 3.1)."""
        return cosine_momentum(self.knobs.momentum, step, total_steps)

    def on_step_end(self, step: int, total_steps: int) -> None:
        super().on_step_end(step, total_steps)
        self.steps_done.fill_(step + 1)

    def feature_extractor(self) -> nn.Module:
        return self.teacher_backbone
