"""Schedules as pure functions: one value per optimisation step, indexed by the loop."""

from __future__ import annotations

import math

import numpy as np


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


def scaled_lr(base: float, batch_size: int, rule: str) -> float:
    """The learning rate for ``batch_size`` from a base rate quoted for a batch of 256."""
    if rule == "linear":
        return base * batch_size / 256
    if rule == "sqrt":
        return base * math.sqrt(batch_size / 256)
    return base
