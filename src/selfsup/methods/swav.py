"""SwAV: Unsupervised Learning of Visual Features by Contrasting Cluster Assignments.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, NeurIPS 2020, https://arxiv.org/abs/2006.09882.

Implements the swapped prediction problem of Eq. (1)-(2) and the online codes of Eq. (3) with
the Sinkhorn-Knopp iterations of Sec. 3.1 / Appendix A.1 (Algorithm 1). With z the l2-normalised
projections and C the l2-normalised prototypes (rows of a bias-free linear layer),

    p_s^(k) = exp(z_s . c_k / tau) / sum_k' exp(z_s . c_k' / tau),
    l(z_t, q_s) = - sum_k q_s^(k) log p_t^(k),                                        (Eq. 2)

and the codes Q of a batch are the entropic equipartition solution (Eq. 3)
Q = Diag(u) exp(C^T Z / epsilon) Diag(v), approximated by ``sinkhorn_iterations`` alternate
normalisations of the prototype rows (each prototype gets 1/K of the mass) and the sample
columns (each sample gets 1/B). Codes are computed for the two large crops only; every other
crop (the other large one and all the small ones of multi-crop, Sec. 3.2) predicts them, and the
terms are averaged as in the released code. Under DDP the Sinkhorn sums run over the global batch.

With small batches the paper keeps a queue of past projections (Appendix A.1: 3840 features
when the batch is 256) whose scores join the batch's before Sinkhorn; only the batch's codes are
used. Prototypes are frozen during the first iterations (313 at batch 4096, i.e. one epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from selfsup import dist
from selfsup.config import Config
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob


@torch.no_grad()
@float32_loss
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV codes (Eq. 3, Appendix A.1 / Algorithm 1) of the prototype scores ``z . c``.

    Args:
        scores: (B, K) scores of B samples (rows) against K prototypes (columns).
        epsilon: entropy regularisation; Q starts as exp(scores / epsilon).
        iterations: alternate normalisations; each ends with the per-sample one.

    Returns the (B, K) codes. Convention (the released code's final rescale by B): every row
    sums to 1 (a sample's soft assignment); the prototype marginals (column sums) tend to B/K
    as ``iterations`` grows. Under DDP, B is the global batch: the prototype sums, the total and
    B are all-reduced across processes. Subtracting the global maximum before the exponential
    (the released code's ``improve_numerical_stability``) rescales Q by a constant, which the
    first normalisation removes.
    """
    scores = scores.detach().float()
    top = scores.max()
    count = torch.tensor(float(scores.shape[0]), device=scores.device)
    if dist.is_distributed():
        tdist.all_reduce(top, op=tdist.ReduceOp.MAX)
        tdist.all_reduce(count)
    q = torch.exp((scores - top) / epsilon).T  # (K, B), the paper's layout
    k = q.shape[0]
    total = q.sum()
    if dist.is_distributed():
        tdist.all_reduce(total)
    q /= total
    for _ in range(iterations):
        per_prototype = q.sum(dim=1, keepdim=True)
        if dist.is_distributed():
            tdist.all_reduce(per_prototype)
        q /= per_prototype * k
        q /= q.sum(dim=0, keepdim=True) * count
    return (q * count).T


@float32_loss
def swapped_prediction_loss(scores: list[torch.Tensor], codes: list[torch.Tensor],
                            temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction loss (Eq. 1-2) over multi-crop views.

    Args:
        scores: per crop, the (B, K) scores z_t . c_k; the first ``len(codes)`` crops are the ones
            codes were computed for (the two large crops).
        codes: per assigned crop s, its (B, K) codes q_s (rows summing to 1).
        temperature: tau of the softmax p_t = softmax(z_t C / tau).

    For each assigned crop s, the mean over the batch of -sum_k q_s log p_t is averaged over the
    other crops t != s; the result is averaged over the assigned crops.
    """
    n_crops = len(scores)
    total = scores[0].new_zeros(())
    for s, q in enumerate(codes):
        sub = scores[0].new_zeros(())
        for t in range(n_crops):
            if t != s:
                sub = sub - (q * F.log_softmax(scores[t] / temperature, dim=1)).sum(dim=1).mean()
        total = total + sub / (n_crops - 1)
    return total / len(codes)


class SwAV(Method):
    """Backbone + projector (l2-normalised) + prototypes; swapped prediction of Sinkhorn codes."""

    name = "swav"
    multi_crop = True

    @dataclass(frozen=True)
    class Knobs:
        n_prototypes: int = knob(3000, ge=2, doc="K, the number of prototypes (rows of C)")
        epsilon: float = knob(0.05, gt=0.0, doc="entropy regularisation of the Sinkhorn codes (Eq. 3)")
        sinkhorn_iterations: int = knob(3, ge=1, doc="Sinkhorn-Knopp normalisation rounds")
        temperature: float = knob(0.1, gt=0.0, doc="tau of the prototype softmax (Eq. 2)")
        freeze_prototypes_iters: int = knob(313, ge=0, doc="iterations during which C gets no update")
        queue_length: int = knob(0, ge=0, doc="past projections per large crop joined to Sinkhorn; 0: no queue")
        queue_start_epoch: int = knob(15, ge=0, doc="epoch from which the queue is filled (then used once full)")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        self.prototypes = nn.Linear(cfg.projector.out_dim, k.n_prototypes, bias=False)
        self.steps_per_epoch = max(1, info.n_images // cfg.batch_size)
        self.register_buffer("queue", torch.zeros(2, k.queue_length, cfg.projector.out_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype c_k back onto the unit sphere (done before each forward)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, views: Views) -> torch.Tensor:
        """l2-normalised projections of all crops, stacked crop by crop: (n_crops * B, D).

        The backbone runs once per resolution (large crops, then small crops), the projector
        once on everything, as in the released code.
        """
        feats = [self.backbone(torch.cat(views.large))]
        if views.small:
            feats.append(self.backbone(torch.cat(views.small)))
        return F.normalize(self.projector(torch.cat(feats)).float(), dim=1)

    def queue_active(self) -> bool:
        """Whether this step fills the queue: it has a length and its start epoch has come."""
        epoch = int(self.steps_done) // self.steps_per_epoch
        return self.knobs.queue_length > 0 and epoch >= self.knobs.queue_start_epoch

    def _queue_share(self, crop: int) -> torch.Tensor:
        """This process's rows of the (global, identical on every rank) queue of ``crop``."""
        n, w, r = self.knobs.queue_length, dist.world_size(), dist.rank()
        return self.queue[crop, r * n // w : (r + 1) * n // w]

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, crop: int) -> torch.Tensor:
        """Sinkhorn codes of one large crop's (B, K) scores; once the queue is full its scores join
        the batch's before Sinkhorn and only the batch's rows are kept."""
        n = scores.shape[0]
        if self.queue_active() and int(self.queue_filled) == self.knobs.queue_length:
            with torch.autocast(scores.device.type, enabled=False):
                past = self._queue_share(crop) @ self.prototypes.weight.T
            scores = torch.cat([past, scores])
        return sinkhorn(scores, self.knobs.epsilon, self.knobs.sinkhorn_iterations)[-n:]

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, n: int) -> None:
        """Write the global batch's projections of the two large crops (``z``: (2B, D), local) into
        the ring-buffer queues, oldest rows first out."""
        length = self.knobs.queue_length
        for crop in range(2):
            rows = dist.gather_with_grad(z[crop * n : (crop + 1) * n].detach())[-length:]
            slots = (self.queue_ptr + torch.arange(len(rows), device=rows.device)) % length
            self.queue[crop, slots] = rows.to(self.queue.dtype)
        m = min(dist.world_size() * n, length)
        self.queue_ptr.copy_((self.queue_ptr + m) % length)
        self.queue_filled.copy_(torch.clamp(self.queue_filled + m, max=length))

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        self.normalize_prototypes()
        n = views.large[0].shape[0]
        z = self.embed(views)
        with torch.autocast(z.device.type, enabled=False):  # float32 scores: Sinkhorn exponentiates them / 0.05
            scores = list(self.prototypes(z).split(n))
        codes = [self.codes(scores[crop].detach(), crop) for crop in range(2)]
        if self.queue_active():
            self.enqueue(z[: 2 * n], n)
        loss = swapped_prediction_loss(scores, codes, self.knobs.temperature)
        return MethodOutput({"loss": loss}, z[:n].detach())

    def on_after_backward(self, step: int, total_steps: int) -> None:
        """No prototype update during the first ``freeze_prototypes_iters`` iterations (App. A.1)."""
        if step < self.knobs.freeze_prototypes_iters:
            self.prototypes.weight.grad = None

    def on_step_end(self, step: int, total_steps: int) -> None:
        super().on_step_end(step, total_steps)
        self.steps_done.fill_(step + 1)
