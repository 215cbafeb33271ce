"""Momentum (EMA) encoders, shared by MoCo, BYOL, MoCo v3, DINO and SimCLR v2.

MoCo (He et al., CVPR 2020, Eq. 2): theta_k <- m * theta_k + (1 - m) * theta_q.
BYOL (Grill et al., NeurIPS 2020, Sec. 3.2) increases m from its base value to 1 with a cosine:
tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """BYOL's schedule: ``base`` at step 0 rising to ``final`` at ``total_steps``."""
    if total_steps <= 0:
        return base
    return final - (final - base) * (math.cos(math.pi * step / total_steps) + 1) / 2


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, m: float) -> None:
    """In place, for every parameter: ``target = m * target + (1 - m) * online``.

    Buffers (BatchNorm running statistics) are copied from the online network, as in BYOL's and
    DINO's reference code, so the target's evaluation-mode statistics stay meaningful.
    """
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(m).add_(o.detach(), alpha=1 - m)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` to serve as its momentum (target / teacher / key) encoder."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target
