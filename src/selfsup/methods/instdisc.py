"""Instance Discrimination: Unsupervised Feature Learning via Non-Parametric Instance Discrimination.

Wu, Xiong, Yu, Lin, CVPR 2018, https://arxiv.org/abs/1805.01978.

Every image is its own class. A memory bank V = {v_i} (:mod:`selfsup.methods.memory_bank`) holds
a unit 128-d feature per training image, and the current feature v = f(x_i) of an image is scored
against the bank with the non-parametric softmax of Eq. (2),

    P(i | v) = exp(v_i^T v / tau) / Z,   Z = sum_j exp(v_j^T v / tau).

``instdisc_loss: softmax`` minimises -log P(i | f_i) with the exact Z over the whole bank.
``instdisc_loss: nce`` (the paper's default) uses noise-contrastive estimation, Eq. (3)-(7): m
noise indices j are drawn uniformly (P_n = 1/n) for each anchor,

    h(i, v) = P(i | v) / (P(i | v) + m P_n(i)),
    J_NCE = -E_{P_d}[log h(i, v)] - m E_{P_n}[log(1 - h(i, v'))],

with Z a constant estimated once by Monte Carlo, Eq. (7), Z = n E_j[exp(v_j^T f_i / tau)] over the
first batch's noise samples (kept in a buffer, so a resumed run uses the same Z). The proximal
regularisation of Eq. (8)-(9) adds lambda ||v_i^(t) - v_i^(t-1)||^2 between the current feature
and its memory entry. After each step the bank rows of the batch are refreshed with momentum,
v_i <- normalise(m v_i + (1 - m) f_i), from every rank under DDP.

The paper and its code stabilise the bank in two different ways: the paper replaces each row
(m = 0) and adds the proximal term (lambda = 30, Sec. 3.3); the released code (lemniscate.pytorch,
``--nce-m 0.5``) smooths the rows with m = 0.5 and has no proximal term. The defaults follow the
code, which produced the published numbers; ``bank_momentum: 0, proximal: 30`` gives the paper's
variant, and a run that combines both is warned about.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.methods.memory_bank import MemoryBank
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob

log = logging.getLogger(__name__)


@float32_loss
def estimate_z(f: torch.Tensor, noise: torch.Tensor, n: int, temperature: float) -> torch.Tensor:
    """Monte-Carlo estimate of the normaliser (Wu et al. Eq. 7): ``n`` times the mean of
    exp(v_j^T f_i / tau) over the anchors ``f`` (B, d) and their noise rows ``noise`` (B, m, d)."""
    return n * torch.exp(torch.einsum("bd,bmd->bm", f, noise) / temperature).mean()


@float32_loss
def nce_loss(f: torch.Tensor, positive: torch.Tensor, noise: torch.Tensor, z: float | torch.Tensor, n: int,
             temperature: float = 0.07) -> torch.Tensor:
    """NCE loss of Wu et al. Eq. (3)-(6), averaged over the anchors.

    Args:
        f: (B, d) unit features of the batch's images.
        positive: (B, d) their memory-bank entries v_i.
        noise: (B, m, d) the bank entries of each anchor's m noise samples.
        z: the constant normaliser Z of P(i | v) = exp(v_i^T v / tau) / Z.
        n: bank size; the noise distribution is P_n = 1/n.
        temperature: tau.

    With h = P / (P + m P_n) = sigmoid(log P - log(m P_n)), the loss per anchor is
    -log h(i, f_i) - sum_j log(1 - h(j, f_i)).
    """
    log_mpn = math.log(noise.shape[1] / n)
    log_z = torch.log(torch.as_tensor(z, dtype=f.dtype, device=f.device))
    log_p_pos = (f * positive).sum(1) / temperature - log_z
    log_p_noise = torch.einsum("bd,bmd->bm", f, noise) / temperature - log_z
    log_h_pos = F.logsigmoid(log_p_pos - log_mpn)
    log_one_minus_h_noise = F.logsigmoid(log_mpn - log_p_noise)
    return -(log_h_pos + log_one_minus_h_noise.sum(1)).mean()


@float32_loss
def instance_softmax_loss(f: torch.Tensor, bank: torch.Tensor, index: torch.Tensor,
                          temperature: float = 0.07) -> torch.Tensor:
    """-log P(i | f_i) with the full non-parametric softmax over the bank (Wu et al. Eq. 2), averaged.

    ``f`` (B, d) unit features, ``bank`` (n, d) the memory, ``index`` (B,) the images' rows.
    """
    return F.cross_entropy(f @ bank.T / temperature, index)


@float32_loss
def proximal_term(f: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """||v_i^(t) - v_i^(t-1)||^2 of Wu et al. Eq. (8), averaged over the batch: the current features
    ``f`` (B, d) against their memory entries ``previous`` (B, d) from the last visit."""
    return (f - previous).pow(2).sum(1).mean()


class InstDisc(Method):
    """Backbone + linear 128-d embedding (l2-normalised) scored against a memory bank of all images."""

    name = "instdisc"
    n_views = 1

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.07, gt=0.0, doc="tau of P(i|v) = exp(v_i.v / tau) / Z")
        nce_k: int = knob(4096, ge=1, doc="negatives per anchor drawn uniformly from the memory bank "
                                          "(NCE noise samples m)")
        instdisc_loss: str = knob("nce", choices=("nce", "softmax"),
                                  doc="nce: NCE with nce_k noise samples and a constant Z (Eq. 3-7); "
                                      "softmax: the full non-parametric softmax over the bank (Eq. 2)")
        proximal: float = knob(0.0, ge=0.0, doc="lambda of the proximal term ||f_i - v_i||^2 (Eq. 8; the paper: 30 "
                                                        "with bank_momentum 0)")
        bank_momentum: float = knob(0.5, ge=0.0, lt=1.0,
                                    doc="memory bank update v_i <- normalise(m v_i + (1 - m) f_i)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        if self.knobs.proximal > 0 and self.knobs.bank_momentum > 0:
            log.warning("instdisc: proximal=%s on a momentum bank (bank_momentum=%s) combines the paper's "
                        "regulariser with the reference code's smoothing, which neither does; set -S proximal=0 "
                        "(the code) or -S bank_momentum=0 (the paper)", self.knobs.proximal, self.knobs.bank_momentum)
        self.memory = MemoryBank(info.n_images, cfg.projector.out_dim)
        self.register_buffer("nce_z", torch.zeros(()))
        self.register_buffer("nce_z_ready", torch.zeros((), dtype=torch.bool))
        # The batch's (index, features) between forward and on_step_end of the same step.
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        k = self.knobs
        feats = self.projector(self.backbone(views.large[0]))
        with torch.autocast(feats.device.type, enabled=False):
            f = F.normalize(feats.float(), dim=1)
            bank = self.memory.bank
            previous = bank[index]
            if k.instdisc_loss == "nce":
                noise = bank[self.memory.sample_for_batch(f.shape[0], k.nce_k)]
                if not bool(self.nce_z_ready):
                    z = estimate_z(f.detach(), noise, self.memory.n_rows, k.temperature)
                    self.nce_z.fill_(dist.all_reduce_mean(z))
                    self.nce_z_ready.fill_(True)
                main = nce_loss(f, previous, noise, self.nce_z, self.memory.n_rows, k.temperature)
            else:
                main = instance_softmax_loss(f, bank, index, k.temperature)
            prox = proximal_term(f, previous)
            loss = main + k.proximal * prox
        if self.training:
            self._pending = (index, f.detach())
        return MethodOutput({"loss": loss, k.instdisc_loss: main.detach(), "proximal": prox.detach()}, f.detach())

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Write the batch's features into the memory bank (after the step, so the loss saw the old rows)."""
        super().on_step_end(step, total_steps)
        if self._pending is None:
            return
        index, f = self._pending
        self._pending = None
        self.memory.update(index, f, self.knobs.bank_momentum)
