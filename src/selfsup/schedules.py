"""Schedules as pure functions: one value per optimisation step, indexed by the loop."""

from __future__ import annotations

import math

import numpy as np

from selfsup.config.image import OptimConfig


def warmup_cosine(base: float, total_steps: int, warmup_steps: int = 0, final: float = 0.0,
                  start: float = 0.0) -> np.ndarray:
    """Linear warm-up from ``start`` to ``base`` over ``warmup_steps``, then cosine decay towards ``final``
    (reached one step after the last; the curve is sampled at t = i / n of the decay).

    Returns an array of length ``total_steps`` (SGDR, Loshchilov & Hutter 2017, without restarts).
    """
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(start, base, warmup_steps, endpoint=False) if warmup_steps else np.zeros(0)
    n = total_steps - warmup_steps
    t = np.arange(n) / max(n, 1)
    cos = final + 0.5 * (base - final) * (1 + np.cos(math.pi * t))
    return np.concatenate([warm, cos])


def cosine_momentum(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """BYOL's EMA momentum (Grill et al. 2020, Sec. 3.2), tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2:
    ``base`` at step 0 rising to ``final`` at ``total_steps`` (K); ``base`` throughout when K <= 0."""
    if total_steps <= 0:
        return base
    return final - (final - base) * (math.cos(math.pi * step / total_steps) + 1) / 2


def scaled_lr(base: float, batch_size: int, rule: str) -> float:
    """The learning rate for ``batch_size`` from a base rate quoted for a batch of 256."""
    if rule == "linear":
        return base * batch_size / 256
    if rule == "sqrt":
        return base * math.sqrt(batch_size / 256)
    return base


def warmup_steps(base: float, total_steps: int, warmup_steps: int, drops: tuple[float, ...],
                 factor: float = 0.1) -> np.ndarray:
    """Linear warm-up, then ``base`` multiplied by ``factor`` at each fraction of training in
    ``drops`` (the step schedule of MoCo v1, He et al. 2020, Sec. 4: x0.1 at epochs 120 and 160 of 200).
    """
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(0.0, base, warmup_steps, endpoint=False) if warmup_steps else np.zeros(0)
    t = np.arange(warmup_steps, total_steps) / max(total_steps, 1)
    n_drops = (t[:, None] >= np.asarray(sorted(drops))[None, :]).sum(1) if drops else np.zeros(len(t))
    return np.concatenate([warm, base * factor ** n_drops])


def lr_schedule(base: float, total_steps: int, warmup: int, cfg: OptimConfig) -> np.ndarray:
    """The per-step learning rate that ``optim.schedule`` names."""
    if cfg.schedule == "step":
        return warmup_steps(base, total_steps, warmup, cfg.lr_steps)
    return warmup_cosine(base, total_steps, warmup, final=base * cfg.min_lr_ratio)


def weight_decay_schedule(total_steps: int, cfg: OptimConfig) -> np.ndarray:
    """The per-step weight decay: ``weight_decay`` throughout, or with ``weight_decay_end`` a cosine
    from the one to the other over the whole run, without warm-up (DINO, Caron et al. 2021, Sec. 4.1:
    0.04 -> 0.4; ``main_dino.py`` ``wd_schedule``)."""
    if cfg.weight_decay_end is None:
        return np.full(total_steps, cfg.weight_decay)
    return warmup_cosine(cfg.weight_decay, total_steps, 0, final=cfg.weight_decay_end)
