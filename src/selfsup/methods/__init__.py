"""Method registry: the ``method`` param names a class here."""

from selfsup.methods.barlow import BarlowTwins
from selfsup.methods.base import Method, MethodOutput
from selfsup.methods.simclr import SimCLR

REGISTRY: dict[str, type[Method]] = {cls.name: cls for cls in (SimCLR, BarlowTwins)}

__all__ = ["REGISTRY", "Method", "MethodOutput", "build_method"]


def build_method(cfg) -> Method:  # noqa: ANN001 - Config, imported lazily to avoid a cycle
    """The method named by ``cfg.method``, built from the resolved config."""
    return REGISTRY[cfg.method](cfg)
