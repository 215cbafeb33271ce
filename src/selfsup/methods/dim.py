"""DIM: Learning deep representations by mutual information estimation and maximization.

Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler, Bengio, ICLR 2019,
https://arxiv.org/abs/1808.06670 (Deep InfoMax).

The encoder is the backbone: its last convolutional map gives the local features C(x)_{(i)}
(B, C, h, w), and the pooled map through a small MLP gives the global feature Y = E(x) (B, 64).
A score T(local, Y) uses the paper's encode-and-dot-product architecture: a 1x1-convolution
network on every local feature and an MLP on Y (both with a linear shortcut and a layer norm),
then their dot product, divided by sqrt(score_dim) (not in the paper: with layer-normed
encodings the raw dot product has a standard deviation of sqrt(score_dim), ~45 for 2048 units,
which saturates InfoNCE's softmax at initialisation; the scale keeps T near unit variance).
Pairs of an image's Y with its own local features are drawn from the joint P; pairs with the
local features of the other images of the batch from the product of marginals P x P~. The MI
estimators (Sec. 3.1), each written as the quantity to maximise:

    JSD (Eq. 4):      I = E_P[-sp(-T(x, y))] - E_{P x P~}[sp(T(x', y))],     sp = softplus,
    InfoNCE (Eq. 5):  I = E_P[T(x, y) - log sum_{x' in {x} u negatives} exp T(x', y)],
    DV (Eq. 1, MINE): I = E_P[T(x, y)] - log E_{P x P~}[exp T(x', y)].

Local DIM (Sec. 3.2) averages the estimate over the h*w positions; InfoNCE's negatives for one
position are the local features of the other images at every position. The complete objective
(Sec. 3.4, Eq. 8) is maximised, i.e. the loss is

    loss = -alpha * I(X; Y) - beta * mean_i I(X^(i); Y) + gamma * (D_prior + E_prior),

with the global term I(X; Y) scored between the flattened feature map and Y (its own
encode-and-dot-product networks), and prior matching (Sec. 3.3, Eq. 7): a discriminator D tells
samples of the uniform prior V = U[0, 1]^64 from encodings Y (an MLP with 1000 and 200 hidden
units). D minimises the binary cross-entropy D_prior on detached encodings; the encoder minimises
E_prior = -E[log D(Y)] through a copy of D's weights that takes no gradient, so one optimiser
step makes both moves of the min-max. E_prior is the non-saturating form of Goodfellow et al.
(2014) rather than Eq. 7's E[log(1 - D(Y))]: with the latter the encoder's gradient vanished
once D won (D's loss fell to ~0 within 30 steps on digits-bg and Y never moved towards the
prior). Networks of terms with weight 0 are not built.

Under DDP the local (and flattened) encodings are all-gathered with gradient, so negatives come
from the global batch; the JSD and InfoNCE estimates averaged over ranks equal the global-batch
ones (DV, a log of a mean, is the mean of per-rank estimates).

Evaluation uses the backbone's pooled convolutional features (the paper also evaluates the conv
map itself and Y; the pooled map is the closest to the other methods' features here).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss, full_precision
from selfsup.schema import knob

ESTIMATORS = ("jsd", "infonce", "dv")


def _positive_mask(scores: torch.Tensor, offset: int) -> torch.Tensor:
    """(N, n, 1) bool: True where candidate image i is the positive of global j (i == offset + j)."""
    n_cand, n = scores.shape[:2]
    i = torch.arange(n_cand, device=scores.device)[:, None]
    j = torch.arange(n, device=scores.device)[None, :]
    return (i == offset + j)[..., None]


def jsd_mi(scores: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Jensen-Shannon MI estimate (DIM Eq. 4): E_P[-sp(-T)] - E_{PxP~}[sp(T)].

    ``scores[i, j, p]`` = T(local feature p of image i, global feature of image j), shape (N, n, P);
    the positive pairs are i == offset + j, all other images i are the negatives of j.
    """
    pos = _positive_mask(scores, offset).expand_as(scores)
    return -F.softplus(-scores[pos]).mean() - F.softplus(scores[~pos]).mean()


def infonce_mi(scores: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """InfoNCE MI estimate (DIM Eq. 5), averaged over the positive pairs (j, p).

    The positive T(local p of image j, Y_j) is scored against the local features of every other
    image at every position; ``scores`` as in :func:`jsd_mi`.
    """
    n_cand, n, n_pos = scores.shape
    pos_mask = _positive_mask(scores, offset)
    positives = scores[offset + torch.arange(n, device=scores.device), torch.arange(n, device=scores.device)]
    negatives = scores.masked_fill(pos_mask, float("-inf")).permute(1, 0, 2).reshape(n, 1, n_cand * n_pos)
    logits = torch.cat([positives[..., None], negatives.expand(n, n_pos, n_cand * n_pos)], dim=2)
    return (positives - torch.logsumexp(logits, dim=2)).mean()


def dv_mi(scores: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Donsker-Varadhan MI estimate (DIM Eq. 1, as in MINE): E_P[T] - log E_{PxP~}[exp T]."""
    pos = _positive_mask(scores, offset).expand_as(scores)
    neg = scores[~pos]
    return scores[pos].mean() - (torch.logsumexp(neg, 0) - math.log(neg.numel()))


@float32_loss
def mi_estimate(scores: torch.Tensor, estimator: str, offset: int = 0) -> torch.Tensor:
    """The MI estimate named by ``estimator`` (``jsd``, ``infonce`` or ``dv``) of a score tensor."""
    return {"jsd": jsd_mi, "infonce": infonce_mi, "dv": dv_mi}[estimator](scores, offset)


@float32_loss
def prior_discriminator_loss(d_prior: torch.Tensor, d_encoded: torch.Tensor) -> torch.Tensor:
    """The discriminator's side of DIM Eq. 7 (its objective negated), with D = sigmoid(logit):

        -(E_V[log D(v)] + E_P[log(1 - D(E(x)))]) = E_V[sp(-logit(v))] + E_P[sp(logit(E(x)))].
    """
    return F.softplus(-d_prior).mean() + F.softplus(d_encoded).mean()


@float32_loss
def prior_encoder_loss(d_encoded: torch.Tensor) -> torch.Tensor:
    """The encoder's side of DIM Eq. 7 in the non-saturating form of Goodfellow et al. (2014):
    -E_P[log D(E(x))] = E_P[sp(-logit(E(x)))]."""
    return F.softplus(-d_encoded).mean()


class EncodeNet(nn.Module):
    """Encode-and-dot-product branch: a two-layer net plus a linear shortcut, then a layer norm.

    ``conv=True`` uses 1x1 convolutions on maps (B, C, h, w) -> (B, units, h, w); otherwise linear
    layers on vectors (B, C) -> (B, units).
    """

    def __init__(self, in_dim: int, units: int, conv: bool) -> None:
        super().__init__()
        self.conv = conv
        self.body = nn.Sequential(self._layer(in_dim, units, False),
                                  nn.BatchNorm2d(units) if conv else nn.BatchNorm1d(units),
                                  nn.ReLU(inplace=True), self._layer(units, units, True))
        self.shortcut = self._layer(in_dim, units, False)
        self.norm = nn.LayerNorm(units)

    def _layer(self, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
        return nn.Conv2d(in_dim, out_dim, 1, bias=bias) if self.conv else nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x) + self.shortcut(x)
        if self.conv:
            return self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.norm(h)


class DIM(Method):
    """Conv backbone (local map) + global MLP (Y) + encode-and-dot-product MI critics."""

    name = "dim"
    n_views = 1

    @dataclass(frozen=True)
    class Knobs:
        estimator: str = knob("jsd", choices=ESTIMATORS, doc="MI estimator: jsd (Eq. 4), infonce (Eq. 5), dv")
        alpha: float = knob(0.0, ge=0.0, doc="weight of the global MI term I(X; Y)")
        beta: float = knob(1.0, ge=0.0, doc="weight of the local MI term, averaged over positions")
        gamma: float = knob(0.1, ge=0.0, doc="weight of adversarial prior matching to U[0, 1]^dim_global")
        dim_global: int = knob(64, ge=1, doc="size of the global feature Y")
        score_dim: int = knob(2048, ge=1, doc="units of the encode-and-dot-product critic networks")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        if not hasattr(self.backbone, "feature_map"):
            raise ConfigError(f"dim needs a convolutional backbone with a feature map (small_cnn, resnet18, "
                              f"resnet50); backbone.name={cfg.backbone.name!r} has none. "
                              f"Set -S backbone.name=small_cnn")
        if k.alpha == 0 and k.beta == 0:
            raise ConfigError("dim: alpha=0 and beta=0 leave no mutual information to maximise; "
                              "set -S beta=1.0 (local DIM) or -S alpha=1.0 (global DIM)")
        c = self.backbone.feature_dim
        self.global_head = mlp(c, dataclasses.replace(cfg.projector, out_dim=k.dim_global, last_bn=False))
        if k.beta > 0:
            self.local_critic = EncodeNet(c, k.score_dim, conv=True)
            self.local_global_critic = EncodeNet(k.dim_global, k.score_dim, conv=False)
        if k.alpha > 0:
            self.map_critic = EncodeNet(self._map_size(), k.score_dim, conv=False)
            self.map_global_critic = EncodeNet(k.dim_global, k.score_dim, conv=False)
        if k.gamma > 0:
            self.discriminator = nn.Sequential(nn.Linear(k.dim_global, 1000), nn.ReLU(inplace=True),
                                               nn.Linear(1000, 200), nn.ReLU(inplace=True), nn.Linear(200, 1))

    def _map_size(self) -> int:
        """C * h * w of the backbone's feature map at the view size (a dry run in eval mode)."""
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            size = self.backbone.feature_map(torch.zeros(1, 3, self.cfg.views.size, self.cfg.views.size)).numel()
        self.backbone.train(was_training)
        return size

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        k = self.knobs
        fmap = self.backbone.feature_map(views.large[0])
        y = self.global_head(fmap.float().mean((2, 3)))
        offset = dist.rank() * y.shape[0]
        losses: dict[str, torch.Tensor] = {}
        total = y.new_zeros((), dtype=torch.float32)
        if k.beta > 0:
            local = dist.gather_with_grad(self.local_critic(fmap).flatten(2))  # (N, U, P)
            glob = self.local_global_critic(y)                                  # (n, U)
            with full_precision(y):
                scores = torch.einsum("iup,ju->ijp", local.float(), glob.float()) / math.sqrt(k.score_dim)
            losses["mi_local"] = mi_estimate(scores, k.estimator, offset)
            total = total - k.beta * losses["mi_local"]
        if k.alpha > 0:
            flat = dist.gather_with_grad(self.map_critic(fmap.flatten(1)))       # (N, U)
            glob = self.map_global_critic(y)                                      # (n, U)
            with full_precision(y):
                scores = (flat.float() @ glob.float().T)[..., None] / math.sqrt(k.score_dim)  # (N, n, 1)
            losses["mi_global"] = mi_estimate(scores, k.estimator, offset)
            total = total - k.alpha * losses["mi_global"]
        if k.gamma > 0:
            prior = torch.rand_like(y, dtype=torch.float32)
            losses["prior_disc"] = prior_discriminator_loss(self.discriminator(prior).float(),
                                                            self.discriminator(y.detach()).float())
            frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
            losses["prior_enc"] = prior_encoder_loss(functional_call(self.discriminator, frozen, (y,)).float())
            total = total + k.gamma * (losses["prior_disc"] + losses["prior_enc"])
        return MethodOutput({"loss": total, **losses}, y.detach())
