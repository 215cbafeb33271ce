"""CPC: Representation Learning with Contrastive Predictive Coding (images, Sec. 3.2).

van den Oord, Li, Vinyals, 2018, https://arxiv.org/abs/1807.03748, with some of the changes of
Hénaff, Srinivas, De Fauw, Razavi, Doersch, Eslami, van den Oord, "Data-Efficient Image Recognition
with Contrastive Predictive Coding", ICML 2020, https://arxiv.org/abs/1905.09272 (CPC v2).

One augmented view per image is cut into a grid of overlapping patches (Sec. 3.2: 64x64 crops
with 32 px overlap, a 7x7 grid of a 256x256 image). The backbone encodes every patch on its own
to z_{i,j}; a PixelCNN-style autoregressive network of causal (masked) convolutions summarises
the rows above into c_{i,j}, which sees z_{i',*} only for i' <= i. For each step k = 1..K a
linear W_k predicts z_{i+k,j} from c_{i,j} with the InfoNCE loss (Eq. 4, with the log-bilinear
score f_k(z, c) = exp(z^T W_k c) of Eq. 3):

    L_k = -E[ log( exp(z_{i+k,j}^T W_k c_{i,j}) / sum_{z_l} exp(z_l^T W_k c_{i,j}) ) ],

where the candidates z_l are the positive and, as negatives, every other patch of the batch at
the target rows (other positions of the same image and all positions of other images). The loss
is averaged over positions, then over k (and over directions, below). Under DDP the candidates
are all-gathered with gradient, so negatives come from the global batch.

Taken from CPC v2 (Hénaff et al. 2020, Sec. 4.1), each optional:

- ``directions``: besides predicting top-to-bottom, predict bottom-to-top (2) and also
  left-to-right and right-to-left (4), each direction with its own context network and W_k
  (the grid is rotated, so every direction is "downwards" in its own frame);
- ``color_drop``: patch-based augmentation "colour dropping": with this probability a patch keeps
  one random colour channel and the other two are set to 0 (the dataset mean);
- ``params/methods/cpc.yaml`` uses GroupNorm in the backbone, the closest available norm to CPC
  v2's layer normalisation: statistics per sample, none shared between patches through the batch
  (CPC v1 Sec. 3.2 used no batch norm). With GroupNorm keep the rate near the paper's 2e-4: at
  Adam lr 1e-3 the small CNN's features died (all ReLUs off, loss stuck at chance) within 60
  steps in one of two short runs on digits-bg, which BatchNorm's per-channel statistics prevent.

The W_k start at zero (not in the papers), so every score starts at 0 and the loss at
log(candidates). With PyTorch's default random W_k the unnormalised scores start far above that
(loss 9.5 against log 384 = 5.95) and learning is slower: after 40 Adam steps (lr 2e-4, batch 64,
GroupNorm small CNN, digits-bg 16 px views) the loss was 4.19 from a random W_k, 2.98 from zero.

Evaluation (``feature_extractor``) follows the papers' linear evaluation: the image is cut into
the same grid and the patch encodings are mean-pooled into one (B, D) vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.backbones import build_backbone
from selfsup.precision import float32_loss
from selfsup.schema import knob

# Rotation (``torch.rot90`` quarter turns of the (rows, cols) grid) that makes each prediction
# direction point down: top-to-bottom, bottom-to-top, right-to-left, left-to-right.
ROTATIONS = (0, 2, 1, 3)


@float32_loss
def cpc_infonce(predictions: torch.Tensor, targets: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """InfoNCE (CPC Eq. 4) with the log-bilinear score of Eq. 3, averaged over the predictions.

    Args:
        predictions: (N, d) the predictions W_k c_t, one per anchor position.
        targets: (M, d) candidate encodings z; the positive of ``predictions[n]`` is
            ``targets[offset + n]``, every other row is a negative. With ``offset=0`` and M = N the
            positives lie on the diagonal of the (N, N) score matrix.
        offset: where this process's targets start in ``targets`` (all-gathered under DDP).
    """
    logits = predictions @ targets.T
    labels = offset + torch.arange(predictions.shape[0], device=predictions.device)
    return F.cross_entropy(logits, labels)


def patch_grid(size: int, patch_size: int, patch_stride: int) -> int:
    """Patches per side when a ``size`` x ``size`` image is cut with this size and stride."""
    return (size - patch_size) // patch_stride + 1 if size >= patch_size else 0


def extract_patches(x: torch.Tensor, patch_size: int, patch_stride: int) -> torch.Tensor:
    """Overlapping square patches of images (B, C, H, W) -> (B, R, S, C, patch_size, patch_size).

    Patch (r, s) is ``x[:, :, r*stride : r*stride + size, s*stride : s*stride + size]``.
    """
    p = x.unfold(2, patch_size, patch_stride).unfold(3, patch_size, patch_stride)  # (B, C, R, S, p, p)
    return p.permute(0, 2, 3, 1, 4, 5)


def drop_colors(patches: torch.Tensor, p: float) -> torch.Tensor:
    """CPC v2 colour dropping: each patch (B, R, S, C, h, w) keeps, with probability ``p``, only
    one random channel; the others become 0 (the dataset mean of normalised inputs)."""
    b, r, s, c = patches.shape[:4]
    drop = torch.rand(b, r, s, 1, device=patches.device) < p
    keep = F.one_hot(torch.randint(c, (b, r, s), device=patches.device), c).bool()
    mask = (keep | ~drop).to(patches.dtype)
    return patches * mask[..., None, None]


def encode_patches(backbone: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Patches (B, R, S, C, h, w) each through ``backbone`` -> the grid of encodings (B, D, R, S)."""
    b, r, s = patches.shape[:3]
    z = backbone(patches.reshape(b * r * s, *patches.shape[3:]))
    return z.reshape(b, r, s, -1).permute(0, 3, 1, 2)


class PatchPooledEncoder(nn.Module):
    """The evaluation encoder: patch grid -> patch encodings -> mean over the grid (B, D)."""

    def __init__(self, backbone: nn.Module, patch_size: int, patch_stride: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.patch_size = patch_size
        self.patch_stride = patch_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = extract_patches(x, self.patch_size, self.patch_stride)
        return encode_patches(self.backbone, patches).mean((2, 3))


class CausalConv2d(nn.Conv2d):
    """A 3x3 convolution whose output at row i sees input rows i-2..i only.

    Padding only at the top (two rows) is the same as a PixelCNN-style masked 5x3 convolution
    whose rows below the centre are zero: nothing from a lower row ever reaches row i.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (1, 1, 2, 0)))


class ContextBlock(nn.Module):
    """Residual block: ReLU, 1x1 conv, ReLU, causal 3x3 conv, ReLU, 1x1 conv, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  CausalConv2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def context_network(channels: int, layers: int) -> nn.Sequential:
    """The autoregressive context network g_ar: ``layers`` causal residual blocks over the grid."""
    return nn.Sequential(*[ContextBlock(channels) for _ in range(layers)])


def check_grid(cfg: Config) -> None:
    """Raise a :class:`ConfigError` unless the view gives a grid of >= prediction_steps + 2 rows."""
    k = cfg.knobs
    side = patch_grid(cfg.views.size, k.patch_size, k.patch_stride)
    need = k.prediction_steps + 2
    if side < need:
        fix = (f"lower prediction_steps to {side - 2}, " if side >= 3 else "") + \
              "lower patch_size or patch_stride, or raise views.size"
        raise ConfigError(f"cpc: views.size={cfg.views.size} cut into patch_size={k.patch_size} patches with "
                          f"patch_stride={k.patch_stride} gives a {side}x{side} grid, but prediction_steps="
                          f"{k.prediction_steps} needs at least {need} rows (prediction_steps + 2); {fix}")


class CPC(Method):
    """Patch encoder (the backbone) + causal context network + one W_k per prediction step."""

    name = "cpc"
    n_views = 1

    @dataclass(frozen=True)
    class Knobs:
        patch_size: int = knob(8, ge=1, doc="side of the square patches the view is cut into (pixels)")
        patch_stride: int = knob(4, ge=1, doc="step between neighbouring patches; < patch_size overlaps")
        prediction_steps: int = knob(1, ge=1, doc="K: rows ahead predicted, k = 1..K")
        context_layers: int = knob(2, ge=1, doc="causal residual blocks of the context network")
        directions: int = knob(1, choices=(1, 2, 4),
                               doc="1: top-down (CPC); 2: + bottom-up; 4: + left-right, right-left (CPC v2)")
        color_drop: float = knob(0.0, ge=0.0, le=1.0,
                                 doc="probability that a patch keeps one random colour channel (CPC v2)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        check_grid(cfg)
        super().__init__(cfg, info)
        d = self.backbone.feature_dim
        k = self.knobs
        self.context = nn.ModuleList([context_network(d, k.context_layers) for _ in range(k.directions)])
        self.predictors = nn.ModuleList([
            nn.ModuleList([nn.Linear(d, d, bias=False) for _ in range(k.prediction_steps)])
            for _ in range(k.directions)])
        for w in self.predictors.parameters():
            nn.init.zeros_(w)

    def build_backbone(self) -> nn.Module:
        """The patch encoder, sized for ``patch_size`` inputs (matters for ViTs)."""
        return build_backbone(self.cfg.backbone, self.knobs.patch_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Views (B, 3, H, W) -> patch encodings z (B, D, R, S), colour-dropped when training."""
        patches = extract_patches(x, self.knobs.patch_size, self.knobs.patch_stride)
        if self.training and self.knobs.color_drop > 0:
            patches = drop_colors(patches, self.knobs.color_drop)
        return encode_patches(self.backbone, patches)

    def contexts(self, z: torch.Tensor, direction: int = 0) -> torch.Tensor:
        """c (B, D, R', S') for ``direction`` in that direction's rotated frame of the grid z."""
        return self.context[direction](torch.rot90(z, ROTATIONS[direction], (2, 3)))

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        z = self.encode(views.large[0])
        terms: list[list[torch.Tensor]] = [[] for _ in range(self.knobs.prediction_steps)]
        for direction, predictors in enumerate(self.predictors):
            c = self.contexts(z, direction)
            zd = torch.rot90(z, ROTATIONS[direction], (2, 3))
            for k, w_k in enumerate(predictors, start=1):
                pred = w_k(c[:, :, :-k].permute(0, 2, 3, 1).flatten(0, 2))
                target = zd[:, :, k:].permute(0, 2, 3, 1).flatten(0, 2)
                candidates = dist.gather_with_grad(target)
                terms[k - 1].append(cpc_infonce(pred, candidates,
                                                offset=dist.rank() * target.shape[0]))
        per_step = torch.stack([torch.stack(t).mean() for t in terms])
        losses = {"loss": per_step.mean(), **{f"infonce_k{k + 1}": v for k, v in enumerate(per_step)}}
        return MethodOutput(losses, z.float().mean((2, 3)).detach())

    def feature_extractor(self) -> nn.Module:
        return PatchPooledEncoder(self.backbone, self.knobs.patch_size, self.knobs.patch_stride)
