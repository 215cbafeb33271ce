"""Method registry: the ``method`` param names a class here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfsup.methods.barlow import BarlowTwins
from selfsup.methods.base import Method, MethodOutput
from selfsup.methods.simclr import SimCLR

REGISTRY: dict[str, type[Method]] = {cls.name: cls for cls in (SimCLR, BarlowTwins)}

__all__ = ["REGISTRY", "Method", "MethodOutput", "build_method"]


if TYPE_CHECKING:
    from selfsup.config import Config


def build_method(cfg: Config) -> Method:
    """The method named by ``cfg.method``, built from the resolved config."""
    return REGISTRY[cfg.method](cfg)
