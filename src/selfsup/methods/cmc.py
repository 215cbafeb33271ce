"""CMC: Contrastive Multiview Coding.

Tian, Krishnan, Isola, ECCV 2020, https://arxiv.org/abs/1906.05849.

The two views of an image are its colour channels in Lab space (Sec. 4.1, "L" and "ab"): the
augmented RGB image is converted to Lab and split into the luminance L (1 channel) and the
chrominance ab (2 channels), each scaled to about [-1, 1] with the reference code's constants. Each
view has its own encoder f_theta1, f_theta2 (here: the configured backbone with its first
convolution taking 1 or 2 channels, each at the configured width; the paper's "split" ResNets
use half the width per view) followed by a linear 128-d embedding, l2-normalised.

The two-view objective is Eq. (2)-(3) / Sec. 3.2 with the critic h(v1, v2) = exp(z1^T z2 / tau):

    L(V1, V2) = L_contrast^{V1,V2} + L_contrast^{V2,V1},
    L_contrast^{V1,V2} = -E log( h(v1_i, v2_i) / sum_{j=0..k} h(v1_i, v2_j) ),

where the anchor comes from one view and the positive and k negatives from the other.
``cmc_negatives: memory_bank`` (the paper's ImageNet setting, Sec. 3.2 "Implementing the
contrastive loss") takes the positive v2_i and ``nce_k`` uniformly drawn negatives from a memory
bank of the OTHER view, one bank per view, each refreshed with momentum 0.5 (reference code).
``cmc_negatives: in_batch`` contrasts against the other view of every image of the (global,
all-gathered with gradient) batch instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.methods.memory_bank import MemoryBank
from selfsup.models.backbones import build_backbone, standardize_conv_weights
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob

# Reference code's normalisation of Lab: L in [0, 100], a in [-86.183, 98.233], b in
# [-107.857, 94.478] (the range of sRGB colours), each mapped to [-1, 1].
LAB_MEAN = ((0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2)
LAB_SCALE = ((100 - 0) / 2, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2)


@float32_loss
def lab_views(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The L (B, 1, H, W) and ab (B, 2, H, W) views of RGB images in [0, 1], each in about [-1, 1]."""
    lab = kornia.color.rgb_to_lab(rgb.float().clamp(0.0, 1.0))
    mean = torch.tensor(LAB_MEAN, device=lab.device).view(1, 3, 1, 1)
    scale = torch.tensor(LAB_SCALE, device=lab.device).view(1, 3, 1, 1)
    lab = (lab - mean) / scale
    return lab[:, :1], lab[:, 1:]


@float32_loss
def cross_view_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                    temperature: float = 0.07) -> torch.Tensor:
    """L_contrast^{V1,V2} of Tian et al. Eq. (2) with k sampled negatives, averaged over anchors.

    ``anchor`` (B, d) unit embeddings of view 1; ``positive`` (B, d) and ``negatives`` (B, k, d) unit
    embeddings of view 2 (the memory-bank rows of the same image and of k other draws):
    -log( exp(a.p / tau) / (exp(a.p / tau) + sum_j exp(a.n_j / tau)) ).
    """
    pos = (anchor * positive).sum(1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", anchor, negatives)
    logits = torch.cat([pos, neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))


@float32_loss
def in_batch_cross_view_loss(anchor: torch.Tensor, candidates: torch.Tensor, offset: int = 0,
                             temperature: float = 0.07) -> torch.Tensor:
    """L_contrast^{V1,V2} of Tian et al. Eq. (2) with the batch as negatives (InfoNCE), averaged.

    ``anchor`` (b, d) local unit embeddings of view 1; ``candidates`` (M, d) unit embeddings of view 2
    of the whole (global) batch in rank order; the positive of ``anchor[i]`` is
    ``candidates[offset + i]`` and the other M - 1 rows are its negatives.
    """
    target = offset + torch.arange(len(anchor), device=anchor.device)
    return F.cross_entropy(anchor @ candidates.T / temperature, target)


def adapt_input_channels(net: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first ``nn.Conv2d`` of ``net`` (in module order) by a fresh one taking
    ``in_channels`` inputs, with the same output channels, kernel, stride, padding and bias (and
    the weight standardisation of ``gn_ws`` backbones if the old one had it). In place."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            new = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride,
                            module.padding, module.dilation, 1, module.bias is not None, module.padding_mode)
            if parametrize.is_parametrized(module, "weight"):
                standardize_conv_weights(new)
            setattr(parent, attr, new)
            return net
    raise ValueError(f"{type(net).__name__} has no Conv2d to adapt to {in_channels} input channels")


class LabFeatures(nn.Module):
    """Evaluation features of CMC: normalised RGB -> Lab -> [f_L(L), f_ab(ab)] concatenated."""

    def __init__(self, encoder_l: nn.Module, encoder_ab: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.encoder_l = encoder_l
        self.encoder_ab = encoder_ab
        self.register_buffer("mean", mean.detach().clone().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.detach().clone().view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lum, ab = lab_views(x.float() * self.std + self.mean)
        return torch.cat([self.encoder_l(lum), self.encoder_ab(ab)], 1)


class CMC(Method):
    """One encoder + linear embedding per Lab view; cross-view contrast in both directions."""

    name = "cmc"
    n_views = 1

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.07, gt=0.0, doc="tau of the critic exp(z1.z2 / tau)")
        cmc_negatives: str = knob("memory_bank", choices=("memory_bank", "in_batch"),
                                  doc="memory_bank: nce_k negatives from a memory bank of the other view; "
                                      "in_batch: the other images of the (global) batch")
        nce_k: int = knob(16384, ge=1, doc="negatives per anchor drawn uniformly from the memory bank "
                                           "(cmc_negatives=memory_bank)")
        bank_momentum: float = knob(0.5, ge=0.0, lt=1.0,
                                    doc="memory bank update v_i <- normalise(m v_i + (1 - m) f_i)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.backbone_ab = adapt_input_channels(build_backbone(cfg.backbone, cfg.views.size), 2)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        self.projector_ab = mlp(self.backbone_ab.feature_dim, cfg.projector)
        if self.knobs.cmc_negatives == "memory_bank":
            self.memory_l = MemoryBank(info.n_images, cfg.projector.out_dim)
            self.memory_ab = MemoryBank(info.n_images, cfg.projector.out_dim)
        # The batch's (index, z_l, z_ab) between forward and on_step_end of the same step.
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def build_backbone(self) -> nn.Module:
        """The L-view encoder (``self.backbone``); the ab-view encoder is ``self.backbone_ab``."""
        return adapt_input_channels(build_backbone(self.cfg.backbone, self.cfg.views.size), 1)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        k = self.knobs
        lum, ab = lab_views(self.unnormalize(views.large[0].float()))
        z_l = self.projector(self.backbone(lum))
        z_ab = self.projector_ab(self.backbone_ab(ab))
        with torch.autocast(z_l.device.type, enabled=False):
            z_l, z_ab = F.normalize(z_l.float(), dim=1), F.normalize(z_ab.float(), dim=1)
            if k.cmc_negatives == "memory_bank":
                noise = self.memory_l.sample_for_batch(len(z_l), k.nce_k)
                bank_l, bank_ab = self.memory_l.bank, self.memory_ab.bank
                loss_l = cross_view_loss(z_l, bank_ab[index], bank_ab[noise], k.temperature)
                loss_ab = cross_view_loss(z_ab, bank_l[index], bank_l[noise], k.temperature)
                if self.training:
                    self._pending = (index, z_l.detach(), z_ab.detach())
            else:
                offset = dist.rank() * len(z_l)
                all_l, all_ab = dist.gather_with_grad(z_l), dist.gather_with_grad(z_ab)
                loss_l = in_batch_cross_view_loss(z_l, all_ab, offset, k.temperature)
                loss_ab = in_batch_cross_view_loss(z_ab, all_l, offset, k.temperature)
        return MethodOutput({"loss": loss_l + loss_ab, "loss_l_ab": loss_l.detach(), "loss_ab_l": loss_ab.detach()},
                            torch.cat([z_l, z_ab], 1).detach())

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Write the batch's embeddings of each view into that view's memory bank."""
        super().on_step_end(step, total_steps)
        if self._pending is None:
            return
        index, z_l, z_ab = self._pending
        self._pending = None
        self.memory_l.update(index, z_l, self.knobs.bank_momentum)
        self.memory_ab.update(index, z_ab, self.knobs.bank_momentum)

    def feature_extractor(self) -> nn.Module:
        """Normalised RGB images -> the concatenated features of both encoders (the paper's
        representation), converting to Lab with this dataset's mean and std."""
        return LabFeatures(self.backbone, self.backbone_ab, self.data_mean, self.data_std)
