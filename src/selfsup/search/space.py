"""The searched params: ``search.space`` parsed, validated, and turned into Optuna distributions.

Each entry maps a dotted param (``elo.weights.flow.distill``, ``lambda``) to ``[low, high]`` or
``[low, high, log]``. Every entry is checked before any training: the key must name a real
param (the config is resolved at both bounds), ELo weights must stay inside [0, 1], and the
sampler must suit the space (CMA-ES needs at least two dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from selfsup.config import Config
from selfsup.config.video import SearchConfig
from selfsup.errors import ConfigError
from selfsup.params import config_from_dict, deep_merge
from selfsup.stage_config import restrict


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float
    high: float
    log: bool = False

    def grid(self, points: int) -> list[float]:
        values = (np.geomspace(self.low, self.high, points) if self.log else np.linspace(self.low, self.high, points))
        return [float(v) for v in values]


def nested(params: dict[str, Any]) -> dict:
    """``{"elo.weights.rgb.order": 0.3}`` -> ``{"elo": {"weights": {"rgb": {"order": 0.3}}}}``."""
    out: dict = {}
    for key, value in params.items():
        node = out
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def _dimension(name: str, bounds: Any) -> Dimension:
    key = f"search.space.{name}"
    if not isinstance(bounds, (list, tuple)) or len(bounds) not in (2, 3):
        raise ConfigError(f"{key}={bounds!r}: expected [low, high] or [low, high, log]")
    low, high, *flag = bounds
    if isinstance(low, bool) or isinstance(high, bool) or not all(isinstance(b, (int, float)) for b in (low, high)):
        raise ConfigError(f"{key}={bounds!r}: the bounds must be numbers")
    if flag and flag[0] != "log":
        raise ConfigError(f"{key}={bounds!r}: the optional third entry must be 'log'")
    if not low < high:
        raise ConfigError(f"{key}={bounds!r}: low must be below high")
    if flag and low <= 0:
        raise ConfigError(f"{key}={bounds!r}: a log-scaled range needs low > 0")
    if name.startswith("elo.weights.") and not (0.0 <= low and high <= 1.0):
        raise ConfigError(f"{key}={bounds!r}: ELo loss weights live in [0, 1]; keep both bounds inside it")
    return Dimension(name, float(low), float(high), bool(flag))


def parse_space(search: SearchConfig) -> list[Dimension]:
    """The dimensions of ``search.space`` in a fixed (sorted) order."""
    if not search.space:
        raise ConfigError("search.space is empty: name at least one param to search, e.g. "
                          "search.space: {elo.weights.flow.distill: [0.0, 1.0]}")
    dims = [_dimension(name, bounds) for name, bounds in sorted(search.space.items())]
    if search.target == "elo":
        other = [d.name for d in dims if not d.name.startswith("elo.")]
        if other:
            raise ConfigError(f"search.space.{other[0]}: search.target=elo searches elo.* params only")
    if search.sampler == "cmaes" and len(dims) < 2:
        raise ConfigError(f"search.sampler=cmaes needs at least two searched params (search.space has "
                          f"{len(dims)}); use search.sampler=tpe or grid for one")
    return dims


def check_space(base: dict, dims: list[Dimension]) -> None:
    """Resolve the config at both corners of the box, so a wrong key fails before any training."""
    for corner in ("low", "high"):
        try:
            trial_config(base, {d.name: getattr(d, corner) for d in dims})
        except ConfigError as exc:
            raise ConfigError(f"search.space does not resolve at its {corner} bounds: {exc}") from exc


def trial_config(base: dict, params: dict[str, float]) -> Config:
    """The config of a trial: the search stage's resolved params ``base`` with the trial's values on top,
    restricted to what the search stage reads."""
    return restrict(config_from_dict(deep_merge(base, nested(params))), "search")
