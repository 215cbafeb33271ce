"""MoCo: Momentum Contrast for Unsupervised Visual Representation Learning (v1 and v2).

He, Fan, Wu, Xie, Girshick, CVPR 2020, https://arxiv.org/abs/1911.05722 (MoCo v1), and Chen, Fan,
Girshick, He, "Improved Baselines with Momentum Contrastive Learning", 2020,
https://arxiv.org/abs/2003.04297 (MoCo v2: MLP head, blur, cosine schedule, tau = 0.2).

Implements:

- the InfoNCE loss of Eq. (1), for a query q, its positive key k+ and the K keys of the queue,

      L_q = -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_{i=1..K} exp(q.k_i / tau)) ),

  with q and k l2-normalised (Algorithm 1), averaged over the queries;
- the momentum update of Eq. (2), theta_k <- m theta_k + (1 - m) theta_q, of the key encoder
  (backbone + projector), after every optimiser step;
- the dictionary as a FIFO queue (Sec. 3.2): the current batch's keys are enqueued after the
  loss is computed and the oldest batch is dequeued;
- Shuffling BN (Sec. 3.3). Under DDP the key view of the global batch (N = W * B images) is
  gathered, permuted with a permutation every rank draws identically (a generator seeded from
  ``seed`` and the persistent ``shuffle_step`` counter), rank r encodes the r-th slice of the
  permuted batch, the keys are gathered and un-permuted, and rank r keeps the keys of its own B
  images. In one process the same is done with ``shuffle_bn_splits`` = S groups: the key batch is
  permuted with the same permutation, cut into S chunks that are encoded separately (so the BN
  statistics are per chunk, like per-GPU BN) and un-permuted; the queries are encoded in S
  contiguous chunks (like the W per-rank batches), and BN running averages keep the first chunk's
  update only (DDP keeps rank 0's). With S = W and the same seed and step, one process computes
  exactly what W processes compute: loss, gradients, queue and every buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import dist
from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views
from selfsup.models.heads import mlp
from selfsup.precision import float32_loss
from selfsup.schema import knob

log = logging.getLogger(__name__)


@float32_loss
def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2,
                 hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of MoCo Eq. (1), averaged over the N queries.

    Args:
        q: (N, d) queries (l2-normalised here).
        k: (N, d) their positive keys (l2-normalised here); no gradient is expected through them.
        queue: (K, d) the negative keys, already l2-normalised.
        temperature: tau.
        hard_negatives: optional (N, d) one more negative key per query (BG_Swaps, Ryali et al.
            2021), appended after the queue's logits.

    The logits of query n are [q_n.k_n, q_n.queue_1, ..., q_n.queue_K] / tau and the positive is
    class 0, as in the paper's Algorithm 1.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ queue.T
    parts = [l_pos, l_neg]
    if hard_negatives is not None:
        parts.append((q * F.normalize(hard_negatives, dim=1)).sum(1, keepdim=True))
    logits = torch.cat(parts, dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: int, keys: torch.Tensor) -> int:
    """FIFO update of MoCo's dictionary (Sec. 3.2), in place: ``keys`` (n, d) overwrite rows
    ``ptr .. ptr + n - 1`` of ``queue`` (K, d), the oldest batch; returns the next pointer
    ``(ptr + n) mod K``. K must be a multiple of n, so a batch never straddles the end."""
    n, size = keys.shape[0], queue.shape[0]
    if size % n:
        raise ConfigError(f"queue_size={size} must be a multiple of the global batch ({n} keys per step)")
    queue[ptr : ptr + n] = keys.to(queue.dtype)
    return (ptr + n) % size


def encode_per_group(encoder: nn.Module, chunks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``encoder`` applied to each chunk separately, outputs concatenated: BatchNorm statistics are
    per chunk, as on W GPUs with per-GPU BN. The module's buffers (BN running averages) keep only
    the first chunk's update, as rank 0's do under DDP (the other chunks update throwaway copies)."""
    outputs = [encoder(chunks[0])]
    holders = [(m, name, b) for m in encoder.modules() for name, b in m._buffers.items() if b is not None]
    for m, name, b in holders:
        m._buffers[name] = b.clone()
    try:
        outputs += [encoder(chunk) for chunk in chunks[1:]]
    finally:
        for m, name, b in holders:
            m._buffers[name] = b
    return torch.cat(outputs)


def shuffle_bn_encode(encoder: nn.Module, x: torch.Tensor, perm: torch.Tensor, splits: int) -> torch.Tensor:
    """One-process Shuffling BN (MoCo Sec. 3.3): ``x[perm]`` is cut into ``splits`` chunks that
    ``encoder`` sees separately (:func:`encode_per_group`); the outputs are put back in the order
    of ``x``."""
    return encode_per_group(encoder, x[perm].tensor_split(splits))[torch.argsort(perm)]


class MoCo(Method):
    """MoCo v2 (an MLP projector and the v2 defaults in params/methods/moco.yaml).

    The query encoder is ``backbone`` + ``projector``; the key encoder is their momentum copy, an
    EMA of parameters only: its BatchNorm statistics are its own (facebookresearch/moco
    moco/builder.py ``_momentum_update_key_encoder`` loops over ``parameters()``).
    """

    name = "moco"
    hard_negatives = True
    shuffle_bn = True

    @dataclass(frozen=True)
    class Knobs:
        temperature: float = knob(0.2, gt=0.0, doc="InfoNCE temperature tau (Eq. 1)")
        momentum: float = knob(0.999, ge=0.0, le=1.0, doc="key encoder momentum m (Eq. 2)")
        queue_size: int = knob(65536, ge=1, doc="K, negative keys in the queue; a multiple of batch_size")
        shuffle_bn_splits: int = knob(8, ge=1, doc="one process: BN groups of Shuffling BN (per-GPU batches "
                                                   "simulated); under DDP the ranks are the groups")

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__(cfg, info)
        k = self.knobs
        if k.queue_size % cfg.batch_size:
            raise ConfigError(f"queue_size={k.queue_size} must be a multiple of batch_size={cfg.batch_size} "
                              f"(MoCo enqueues whole batches); e.g. -S queue_size={cfg.batch_size * 16}")
        if not dist.is_distributed() and cfg.batch_size % k.shuffle_bn_splits:
            raise ConfigError(f"shuffle_bn_splits={k.shuffle_bn_splits} must divide batch_size={cfg.batch_size} "
                              f"(equal BN groups)")
        if k.queue_size > info.n_images:
            log.warning("queue_size=%d is larger than the %d pretraining images: the queue holds older keys of "
                        "the query's own image among its negatives; consider -S queue_size=%d", k.queue_size,
                        info.n_images, max(cfg.batch_size, info.n_images // cfg.batch_size * cfg.batch_size))
        self.projector = mlp(self.backbone.feature_dim, cfg.projector)
        self.key_backbone = self.momentum_copy(self.backbone, copy_buffers=False)
        self.key_projector = self.momentum_copy(self.projector, copy_buffers=False)
        queue = F.normalize(torch.randn(k.queue_size, cfg.projector.out_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("shuffle_step", torch.zeros((), dtype=torch.long))

    def groups(self) -> int:
        """How many BN groups the batch is split into: the ranks under DDP, else the knob."""
        return dist.world_size() if dist.is_distributed() else self.knobs.shuffle_bn_splits

    def permutation(self, n: int) -> torch.Tensor:
        """The Shuffling-BN permutation of the global batch for this step, the same on every rank and
        in one process (drawn from the seed and the ``shuffle_step`` counter)."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_033 + int(self.shuffle_step) + 7)
        return torch.randperm(n, generator=g)

    def query_encoder(self) -> nn.Module:
        """Backbone + projector (a container made on the fly, so nothing is registered twice)."""
        return nn.Sequential(self.backbone, self.projector)

    def key_encoder(self) -> nn.Module:
        """The momentum copies of backbone + projector."""
        return nn.Sequential(self.key_backbone, self.key_projector)

    @torch.no_grad()
    def keys(self, x_k: torch.Tensor) -> torch.Tensor:
        """Keys of the GLOBAL batch (N, d) in global order (rank-major), with Shuffling BN."""
        x_all = dist.gather_with_grad(x_k)
        perm = self.permutation(x_all.shape[0]).to(x_k.device)
        if dist.is_distributed():
            mine = x_all[perm].tensor_split(dist.world_size())[dist.rank()]
            shuffled = dist.gather_with_grad(self.key_encoder()(mine))
            k = shuffled[torch.argsort(perm)]
        else:
            k = shuffle_bn_encode(self.key_encoder(), x_all, perm, self.groups())
        return F.normalize(k.float(), dim=1)

    def queries(self, x_q: torch.Tensor) -> torch.Tensor:
        """Query projections; in one process in ``shuffle_bn_splits`` contiguous chunks (per-GPU BN)."""
        if dist.is_distributed():
            return self.query_encoder()(x_q)
        return encode_per_group(self.query_encoder(), x_q.tensor_split(self.groups()))

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:
        x_q, x_k = views.large
        hard = views.hard_negative
        q = self.queries(x_q)
        k_all = self.keys(x_k)
        b = x_q.shape[0]
        local = slice(dist.rank() * b, (dist.rank() + 1) * b)
        k = k_all[local]
        k_hard = self.keys(hard)[local] if hard is not None else None
        loss = moco_infonce(q, k, self.queue.clone(), self.knobs.temperature, k_hard)
        if self.training:
            with torch.no_grad():
                self.queue_ptr.fill_(enqueue(self.queue, int(self.queue_ptr), k_all))
                self.shuffle_step += 1
        return MethodOutput({"loss": loss}, q.detach())

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """m of Eq. (2), constant."""
        return self.knobs.momentum


class MoCoV1(MoCo):
    """MoCo v1: a linear 128-d head (projector.layers 1), tau = 0.07, step schedule, no blur."""

    name = "mocov1"

    @dataclass(frozen=True)
    class Knobs(MoCo.Knobs):
        temperature: float = knob(0.07, gt=0.0, doc="InfoNCE temperature tau (Eq. 1; Sec. 3.3: 0.07)")
