"""Losses in float32 under mixed precision.

Under ``torch.autocast`` a ``.float()`` does not keep a matrix multiply in float32: autocast casts
the operands of ``mm`` / ``bmm`` / ``linear`` back to the low-precision dtype. Networks may run in
bf16 / fp16, but logits divided by a temperature of 0.07, cross-correlation matrices and
exponentiated Sinkhorn scores need float32: a bf16 logit carries about +-0.05 of rounding noise at
tau = 0.07. :func:`float32_loss` runs a loss function with autocast off and its floating-point
tensor arguments (also inside lists and tuples) cast to float32; :func:`full_precision` is the same
region for code that assembles a loss's inputs in a method's ``forward``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def full_precision(x: torch.Tensor) -> torch.autocast:
    """A region with autocast off on ``x``'s device type: every op in it runs in its inputs' dtype."""
    return torch.autocast(x.device.type, enabled=False)


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def _device_type(values: Any) -> str | None:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device.type
        if isinstance(v, (list, tuple)):
            found = _device_type(v)
            if found is not None:
                return found
    return None


def float32_loss(fn: F) -> F:
    """Decorate a loss so that it computes in float32 with autocast off, whatever the caller's region."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = _device_type([*args, *kwargs.values()])
        if device is None:
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*_to_float32(args), **{k: _to_float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
