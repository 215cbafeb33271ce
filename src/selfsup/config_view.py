"""The resolved configuration as ``selfsup config`` prints it: every value with the layer that set it.

The layers, lowest first: the schema defaults (``selfsup.config``), the method's paper defaults
(``params/methods/<method>.yaml``), the preset and its ``per_method`` entry, params.yaml, and the
``-S`` overrides. A value's source is the highest layer that sets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from selfsup.config import Config
from selfsup.params import config_from_dict, load_config, resolve_layers
from selfsup.schema import flatten

DEFAULT = "default"
# Keys printed first, in this order, then the method's knobs, then the sections.
HEAD = ("seed", "dataset", "method", "preset", "epochs", "batch_size", "lr")


def sources(params_path: str | Path = "params.yaml", overrides: dict | None = None
            ) -> tuple[Config, dict[str, Any], dict[str, str]]:
    """The resolved config, its flat values (dotted keys) and the layer that set each value."""
    cfg = load_config(params_path, overrides)
    values = flatten(cfg.to_dict())
    source = dict.fromkeys(values, DEFAULT)
    for layer in resolve_layers(params_path, overrides):
        for key, value in flatten(layer.values).items():
            if key in source:
                source[key] = layer.name
            elif value != {}:  # a mapping set at once: its entries come from this layer
                for sub in (k for k in source if k.startswith(key + ".")):
                    source[sub] = layer.name
    return cfg, values, source


def defaults_of(method: str) -> dict[str, Any]:
    """The schema defaults (and the method's knob defaults), flat: what no layer sets."""
    return {**flatten(config_from_dict({"method": method}).to_dict()), "method": Config.method}


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def render(cfg: Config, values: dict[str, Any], source: dict[str, str], changed_only: bool = False) -> str:
    """YAML of the config with ``# <source>`` after each value; ``changed_only`` keeps the values that
    differ from the schema defaults."""
    defaults = defaults_of(cfg.method)
    knobs = [k for k in cfg.to_dict() if "." not in k and k not in HEAD and not isinstance(cfg.to_dict()[k], dict)]
    order = [k for k in HEAD if k in values] + knobs + [k for k in values if k not in HEAD and k not in knobs]
    keep = [k for k in order if not changed_only or values[k] != defaults.get(k)]
    lines: list[str] = []
    opened: list[str] = []
    width = max((len(k.rsplit(".", 1)[-1]) + 2 * k.count(".") + len(_scalar(values[k])) for k in keep), default=0)
    for key in keep:
        *parents, leaf = key.split(".")
        common = 0
        while common < min(len(parents), len(opened)) and parents[common] == opened[common]:
            common += 1
        for depth in range(common, len(parents)):
            lines.append(f"{'  ' * depth}{parents[depth]}:")
        opened = parents
        text = f"{'  ' * len(parents)}{leaf}: {_scalar(values[key])}"
        lines.append(f"{text.ljust(width + 2)}  # {source[key]}")
    return "\n".join(lines) + "\n"
