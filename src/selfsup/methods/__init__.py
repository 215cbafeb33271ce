"""Method registry: the ``method`` param names a class here.

Every module in this package that defines a :class:`Method` subclass with a ``name`` registers
it; the registry is sorted by name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING

from selfsup.errors import ConfigError
from selfsup.methods.base import DataInfo, Method, MethodOutput, Views

__all__ = ["REGISTRY", "DataInfo", "Method", "MethodOutput", "Views", "build_method", "check_batch_norm", "check_views"]

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


def check_views(cfg: Config) -> None:
    """Refuse views the method cannot take: multi-crop small crops without ``Method.multi_crop``, BG_Swaps'
    hard negative without ``Method.hard_negatives``. ``check_params`` runs this (through
    :func:`build_method`), so a bad combination stops the DAG before any data stage."""
    cls = REGISTRY[cfg.method]
    n_small = cfg.views.multi_crop.n_small
    if n_small and not cls.multi_crop:
        able = sorted(name for name, c in REGISTRY.items() if c.multi_crop)
        raise ConfigError(f"views.multi_crop.n_small={n_small} but method {cfg.method!r} does not take multi-crop "
                          f"views (those that do: {', '.join(able)}); set -S ++views.multi_crop.n_small=0")
    swaps = cfg.views.background.swaps
    if swaps > 0 and not cls.hard_negatives:
        able = sorted(name for name, c in REGISTRY.items() if c.hard_negatives)
        raise ConfigError(f"views.background.swaps={swaps} but method {cfg.method!r} takes no hard negatives; "
                          f"BG_Swaps works with {', '.join(able)}; set -S views.background.swaps=0")


def check_batch_norm(cfg: Config) -> None:
    """Refuse global BatchNorm (``train.sync_bn``) for a method whose Shuffling BN needs per-device
    statistics (MoCo v1/v2, He et al. 2020, Sec. 3.3): with global statistics the shuffle hides nothing."""
    if cfg.train.sync_bn and REGISTRY[cfg.method].shuffle_bn:
        raise ConfigError(f"train.sync_bn=true gives method {cfg.method!r} global BatchNorm statistics, which "
                          f"defeats its Shuffling BN (per-device statistics of a shuffled key batch); set "
                          f"-S train.sync_bn=false")


def build_method(cfg: Config, info: DataInfo) -> Method:
    """The method named by ``cfg.method``, built from the resolved config after :func:`check_views` and
    :func:`check_batch_norm`."""
    check_views(cfg)
    check_batch_norm(cfg)
    return REGISTRY[cfg.method](cfg, info)
