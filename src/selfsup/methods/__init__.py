"""Method registry: the ``method`` param names a class here.

Every module in this package that defines a :class:`Method` subclass with a ``name`` registers
it; the registry is sorted by name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING

from selfsup.methods.base import DataInfo, Method, MethodOutput

__all__ = ["REGISTRY", "DataInfo", "Method", "MethodOutput", "build_method"]

if TYPE_CHECKING:
    from selfsup.config import Config


def _discover() -> dict[str, type[Method]]:
    found: dict[str, type[Method]] = {}
    for mod in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Method) and cls.name and cls.__module__ == module.__name__:
                if cls.name in found and found[cls.name] is not cls:
                    raise RuntimeError(f"two methods are named {cls.name!r}: {found[cls.name]} and {cls}")
                found[cls.name] = cls
    return dict(sorted(found.items()))


REGISTRY: dict[str, type[Method]] = _discover()


def build_method(cfg: Config, info: DataInfo) -> Method:
    """The method named by ``cfg.method``, built from the resolved config."""
    return REGISTRY[cfg.method](cfg, info)
