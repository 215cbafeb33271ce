"""A memory bank of l2-normalised features, one row per pretraining image.

Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018, https://arxiv.org/abs/1805.01978, Sec. 3.1-3.2: the bank V = {v_i} holds a unit feature
for each of the n training images, initialised at random (uniform entries, then normalised); noise
samples for NCE are drawn from the uniform distribution P_n = 1/n; the rows of the batch's images
are refreshed with the momentum update of the reference code (``--nce-m 0.5``),

    v_i <- normalise(m * v_i + (1 - m) * f_i).

Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020, https://arxiv.org/abs/1906.05849,
Sec. 3.2 keeps one such bank per view.

Under DDP, :meth:`MemoryBank.update` all-gathers the indices and features of every rank first, so
every rank applies the same update and holds the same bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import dist


def momentum_update(rows: torch.Tensor, features: torch.Tensor, momentum: float) -> torch.Tensor:
    """The refreshed bank rows ``normalise(m * rows + (1 - m) * features)`` (Wu et al., reference code)."""
    return F.normalize(momentum * rows + (1.0 - momentum) * features, dim=1)


class MemoryBank(nn.Module):
    """``bank`` (n, d): a persistent buffer of unit rows, saved and restored with the method."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.rand(n, dim) * 2 - 1, dim=1))

    @property
    def n_rows(self) -> int:
        return self.bank.shape[0]

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` indices drawn uniformly with replacement (the noise distribution P_n = 1/n)."""
        return torch.randint(self.n_rows, (k,), generator=generator, device=self.bank.device)

    def sample_for_batch(self, batch: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, k) noise indices for this rank's ``batch`` anchors.

        Every rank draws the whole global batch's indices (its RNG is seeded alike) and keeps its
        own rows, so the anchors of all ranks get the indices one process would draw for them.
        """
        rank = dist.rank()
        draw = self.sample(batch * dist.world_size() * k, generator).view(-1, k)
        return draw[rank * batch : (rank + 1) * batch]

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
        """Momentum-update the rows ``index`` with the l2-normalised ``features`` (both gathered from
        every rank under DDP; every rank must call this)."""
        index = dist.gather_detached(index.to(self.bank.device))
        features = dist.gather_detached(features.to(self.bank.device, self.bank.dtype))
        self.bank.index_copy_(0, index, momentum_update(self.bank[index], F.normalize(features, dim=1), momentum))
