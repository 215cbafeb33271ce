"""VQ-VAE: Neural Discrete Representation Learning.

van den Oord, Vinyals, Kavukcuoglu, NeurIPS 2017, https://arxiv.org/abs/1711.00937.

The encoder maps an image to a grid of D-dimensional vectors z_e(x); each is replaced by its nearest
entry of a K x D codebook (Eq. 1-2: k = argmin_j ||z_e(x) - e_j||_2, z_q(x) = e_k); the decoder
reconstructs the image from z_q(x). The decoder's gradient is copied straight through the
quantisation to the encoder (Sec. 3.2: z_e + sg[z_q - z_e] in the forward pass). The loss (Eq. 3):

    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2,

with the reconstruction term the mean squared error on RGB values in [0, 1] (a Gaussian decoder up
to scale and constant) and the codebook and commitment terms as means over the grid's values,
beta = 0.25 (Sec. 4.1). With ``ema`` the codebook loss is dropped and the codebook follows
exponential moving averages of the encoder outputs assigned to each code (Appendix A.1, Eqs. 6-8,
decay gamma = 0.99): N_i <- gamma N_i + (1 - gamma) n_i, m_i <- gamma m_i + (1 - gamma) sum_j z_i,j,
e_i = m_i / N_i, with the counts Laplace-smoothed (epsilon = 1e-5, as in the authors' Sonnet
``VectorQuantizerEMA``) so that an unused code is never divided by zero. With ``restart_after`` > 0
a code unused for that many consecutive steps is moved onto a random encoder output of the batch
(a dead-code restart; not in the paper, common since Dhariwal et al. 2020). Codebook usage is logged
every step as the perplexity exp(-sum_k p_k log p_k) of the batch's code frequencies (K when every
code is used equally, 1 when one code takes all).

Encoder and decoder are the paper's (Sec. 4.1): two 4x4 stride-2 convolutions, then two residual
3x3 blocks, ``hidden`` channels, a 1x1 convolution to D; the decoder mirrors it with two 4x4
stride-2 transposed convolutions. The prior (Sec. 3.2, 4.2) is a small PixelCNN
(:class:`~selfsup.models.pixelcnn.PixelCNNPrior`) over the code grid; the paper fits it after the
VQ-VAE, here it trains in the same run on the detached codes of every batch (its loss
``prior_nll`` is added to the total; no gradient reaches the VQ-VAE through the discrete codes), so
one ``pretrain`` produces a model that samples. Evaluation runs on the pre-quantisation map z_e(x),
flattened: z_q is the nearest codebook vector of each of its positions, so z_e holds at least the
information z_q does, and the linear probe reads it linearly either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.decoders import ConvDecoder, ResidualStack
from selfsup.models.pixelcnn import PixelCNNPrior
from selfsup.precision import float32_loss, full_precision
from selfsup.schema import knob

DOWNSAMPLING = 4  # the encoder halves the side twice: the code grid is (size / 4) x (size / 4)
LAPLACE_EPS = 1e-5


@float32_loss
def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (Eq. 1) of every row of ``z`` (N, D); ties go to the lowest index."""
    distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(1)[None]
    return distances.argmin(dim=1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z_q's value with z_e's gradient (Sec. 3.2): z_e + sg[z_q - z_e]."""
    return z_e + (z_q - z_e).detach()


@float32_loss
def vq_losses(z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3's codebook term ||sg[z_e] - e||^2 (moves only the codebook) and commitment term
    ||z_e - sg[e]||^2 (moves only the encoder), each the mean over every value; beta is the caller's."""
    return F.mse_loss(z_q, z_e.detach()), F.mse_loss(z_e, z_q.detach())


def perplexity(indices: torch.Tensor, n_codes: int) -> torch.Tensor:
    """exp of the entropy of the code frequencies in ``indices``: K for uniform use, 1 for a single code."""
    p = torch.bincount(indices.flatten(), minlength=n_codes).float()
    p = p / p.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


@torch.no_grad()
def ema_codebook_update(cluster_size: torch.Tensor, embed_sum: torch.Tensor, z: torch.Tensor,
                        indices: torch.Tensor, decay: float,
                        eps: float = LAPLACE_EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Appendix A.1 (Eqs. 6-8): the new (N, m, codebook) from the batch's encoder outputs ``z``
    (n, D) and their codes. The codebook is m_i / N_i with N Laplace-smoothed: (N_i + eps) / (sum N + K eps)
    * sum N."""
    k = cluster_size.shape[0]
    onehot = F.one_hot(indices, k).to(z.dtype)
    counts, sums = onehot.sum(0), onehot.t() @ z
    cluster_size = decay * cluster_size + (1 - decay) * counts
    embed_sum = decay * embed_sum + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + k * eps) * total
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


class VQEncoder(nn.Module):
    """Two 4x4 stride-2 convolutions, a 3x3 convolution, two residual blocks, a 1x1 convolution to D."""

    def __init__(self, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, hidden // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden // 2, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, 1, 1), ResidualStack(hidden, hidden // 4, 2), nn.Conv2d(hidden, code_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VQVAE(Method):
    """Encoder, K x D codebook (gradient or EMA updates, optional dead-code restarts), decoder, PixelCNN prior."""

    name = "vqvae"
    n_views = 1
    generative = True

    @dataclass(frozen=True)
    class Knobs:
        n_codes: int = knob(512, ge=2, doc="K, codebook entries (Sec. 4.1: 512)")
        code_dim: int = knob(64, ge=1, doc="D, dimensions of a code (Sec. 4.1: 64)")
        hidden: int = knob(256, ge=4, doc="channels of the encoder and decoder (Sec. 4.1: 256)")
        commitment: float = knob(0.25, ge=0.0, doc="beta of the commitment term (Sec. 4.1: 0.25)")
        ema: bool = knob(False, doc="codebook by exponential moving averages (Appendix A.1) instead of its loss")
        ema_decay: float = knob(0.99, gt=0.0, lt=1.0, doc="gamma of the EMA codebook (Appendix A.1: 0.99)")
        restart_after: int = knob(0, ge=0, doc="restart a code unused for this many steps (0: never)")
        prior_channels: int = knob(64, ge=1, doc="channels of the PixelCNN prior")
        prior_layers: int = knob(4, ge=1, doc="masked residual layers of the PixelCNN prior")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        if cfg.views.size % DOWNSAMPLING:
            raise ConfigError(f"vqvae: views.size={cfg.views.size} must be a multiple of {DOWNSAMPLING} (the "
                              f"encoder halves the side twice); set -S views.size=16 or 32")
        self.grid = (cfg.views.size // DOWNSAMPLING,) * 2
        self.codebook = nn.Parameter(torch.empty(k.n_codes, k.code_dim).uniform_(-1 / k.n_codes, 1 / k.n_codes),
                                     requires_grad=not k.ema)
        self.register_buffer("cluster_size", torch.zeros(k.n_codes))
        self.register_buffer("embed_sum", self.codebook.detach().clone())
        self.register_buffer("idle_steps", torch.zeros(k.n_codes, dtype=torch.long))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.decoder = nn.Sequential(nn.Conv2d(k.code_dim, k.hidden, 3, 1, 1),
                                     ResidualStack(k.hidden, k.hidden // 4, 2),
                                     ConvDecoder(k.hidden, int(math.log2(DOWNSAMPLING))))
        self.prior = PixelCNNPrior(k.n_codes, k.prior_channels, k.prior_layers)

    def build_backbone(self) -> nn.Module:
        """The paper's encoder (Sec. 4.1); ``backbone.*`` is not read by this method."""
        return VQEncoder(self.cfg.knobs.hidden, self.cfg.knobs.code_dim)

    def feature_extractor(self) -> nn.Module:
        """The pre-quantisation map z_e(x), flattened."""
        return nn.Sequential(self.backbone, nn.Flatten())

    def quantise(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (B, h, w) and quantised map z_q (B, D, h, w) of an encoder map z_e (B, D, h, w)."""
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        indices = nearest_codes(flat, self.codebook)
        z_q = F.embedding(indices, self.codebook.float()).view(b, h, w, d).permute(0, 3, 1, 2)
        return indices.view(b, h, w), z_q

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The decoded quantised map, with the code grid of every image."""
        codes, _ = self.quantise(self.backbone(x).float())
        return self.decode_codes(codes), {"codes": codes}

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, s, s) decoded from code grids (B, h, w)."""
        z_q = F.embedding(codes, self.codebook).permute(0, 3, 1, 2)
        return self.decoder(z_q).float().clamp(0, 1)

    @torch.no_grad()
    def _update_codebook(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """The EMA step (with ``ema``) and dead-code restarts (with ``restart_after``), on the global batch."""
        k = self.knobs
        flat, indices = dist.gather_detached(flat.float()), dist.gather_detached(indices)
        if k.ema:
            size, total, codebook = ema_codebook_update(self.cluster_size, self.embed_sum, flat, indices, k.ema_decay)
            self.cluster_size.copy_(size)
            self.embed_sum.copy_(total)
            self.codebook.copy_(codebook)
        if k.restart_after:
            used = torch.bincount(indices, minlength=k.n_codes) > 0
            self.idle_steps.copy_(torch.where(used, 0, self.idle_steps + 1))
            dead = torch.nonzero(self.idle_steps >= k.restart_after).flatten()
            if len(dead):
                g = torch.Generator().manual_seed(int(self.steps_done))  # the same choice on every rank
                rows = flat[torch.randint(len(flat), (len(dead),), generator=g).to(flat.device)]
                self.codebook[dead] = rows.to(self.codebook.dtype)
                self.embed_sum[dead] = rows
                self.cluster_size[dead] = 1.0
                self.idle_steps[dead] = 0
        self.steps_done += 1

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        x = views.large[0]
        z_e = self.backbone(x)
        with full_precision(z_e):
            z_e = z_e.float()
            codes, z_q = self.quantise(z_e)
            codebook_loss, commitment_loss = vq_losses(z_e, z_q)
        recon = self.decoder(straight_through(z_e, z_q))
        target = self.unnormalize(x).float().clamp(0, 1)
        recon_mse = F.mse_loss(recon.float(), target)
        prior_nll = self.prior.nll(codes)
        loss = recon_mse + self.knobs.commitment * commitment_loss + prior_nll
        if not self.knobs.ema:
            loss = loss + codebook_loss
        if self.training:
            self._update_codebook(z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]), codes.flatten())
        losses = {"loss": loss, "recon_mse": recon_mse, "codebook": codebook_loss, "commitment": commitment_loss,
                  "prior_nll": prior_nll, "perplexity": perplexity(codes, self.knobs.n_codes)}
        return MethodOutput(losses, z_e.detach().mean(dim=(2, 3)))
