"""The params layering: ``params.yaml`` with its preset and the method's paper defaults, resolved
into a validated :class:`~selfsup.config.Config`.

Precedence, lowest first: the schema defaults (:mod:`selfsup.config`),
``params/methods/<method>.yaml`` (the paper's defaults), ``params/presets/<preset>.yaml`` (its
general keys, then its ``per_method.<method>`` keys), then what ``params.yaml`` (or
``dvc exp run -S``) sets. A ``null`` in params.yaml means "not set here", so the layers below it
show through.

``method`` and the knobs users sweep (``epochs``, ``batch_size``, ``lr`` and each method's own
knobs such as ``temperature`` or ``lambda``) are top-level keys. Everything is checked before
any data is touched; a bad value raises one :class:`ConfigError` naming the key, the value and
what is allowed.

This module sits above the schema and above :mod:`selfsup.methods`, whose registry gives each
method's knobs; neither of them imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.io import atomic_write_text
from selfsup.methods import REGISTRY
from selfsup.schema import build, param_key

log = logging.getLogger(__name__)


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``5e-3`` and ``1e-6`` as floats.

    PyYAML follows YAML 1.1, where a float needs a dot; YAML 1.2 (which DVC writes with) and
    every user typing ``-S lambda=5e-3`` mean a number.
    """


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_params_yaml(text: str) -> Any:
    """Parse params-file text (params.yaml, presets, method defaults, ``-S`` values)."""
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path, what: str) -> dict:
    try:
        data = load_params_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def _drop_nulls(d: dict) -> dict:
    return {k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def deep_merge(*layers: dict) -> dict:
    """Merge mappings; later layers win, nested mappings merge key by key."""
    out: dict = {}
    for layer in layers:
        for k, v in layer.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = v
    return out


def _available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def parse_overrides(pairs: list[str]) -> dict:
    """``["views.background.rm=0.2", "method=moco"]`` as a nested overrides mapping (values parsed as YAML)."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-S expects KEY=VALUE (e.g. -S method=moco), got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"-S {pair!r}: {parent} was already set to a value, not a section")
        node[leaf] = load_params_yaml(value)
    return out


def read_overlay(path: Path) -> dict:
    """A params-form YAML file applied over params.yaml (``--overlay``), e.g. the search's best weights."""
    if not Path(path).is_file():
        raise ConfigError(f"overlay {path} not found; run the stage that writes it (e.g. `dvc repro search`)")
    return _read_yaml(Path(path), "overlay")


def params_dir(params_path: Path) -> Path:
    return Path(params_path).resolve().parent / "params"


@dataclass(frozen=True)
class Layer:
    """One source of params, in the order they resolve: what it is called and what it sets."""

    name: str
    values: dict


def resolve_layers(params_path: str | Path = "params.yaml", overrides: dict | None = None) -> list[Layer]:
    """The layers that resolve ``params_path``, lowest first: the method's paper defaults, the preset,
    the preset's ``per_method`` entry, params.yaml, and ``overrides`` (each with its nulls dropped).

    The schema defaults of :mod:`selfsup.config` lie beneath them all.
    """
    params_path = Path(params_path)
    if not params_path.is_file():
        raise ConfigError(f"params file {params_path} not found; run from the repository root")
    params = _drop_nulls(_read_yaml(params_path, "params file"))
    extra = _drop_nulls(overrides or {})
    user = deep_merge(params, extra)
    folder = params_dir(params_path)

    method = user.get("method", Config.method)
    if method not in REGISTRY:
        raise ConfigError(f"method={method!r} is not known; allowed: {', '.join(sorted(REGISTRY))}. "
                          f"Set it with `dvc exp run -S method=<name>`")
    preset = user.get("preset", Config.preset)
    preset_path = folder / "presets" / f"{preset}.yaml"
    if not preset_path.is_file():
        raise ConfigError(f"preset={preset!r} is not known; allowed: "
                          f"{', '.join(_available(folder / 'presets'))} (files in {folder / 'presets'})")
    method_path = folder / "methods" / f"{method}.yaml"
    if not method_path.is_file():
        raise ConfigError(f"method {method!r} has no paper defaults file {method_path}")

    preset_data = _drop_nulls(_read_yaml(preset_path, "preset"))
    per_method = preset_data.pop("per_method", {}) or {}
    unknown_methods = sorted(set(per_method) - set(REGISTRY))
    if unknown_methods:
        raise ConfigError(f"preset {preset_path}: per_method.{unknown_methods[0]} names no method; "
                          f"allowed: {', '.join(sorted(REGISTRY))}")
    for key in sorted(set(user) & set(REGISTRY)):
        if isinstance(user[key], dict):
            raise ConfigError(f"{key}: method knobs are top-level keys; write e.g. "
                              f"`-S {next(iter(user[key]), 'knob')}=...` instead of `-S {key}.<knob>=...`")
    return [Layer(f"params/methods/{method}.yaml", _drop_nulls(_read_yaml(method_path, "method defaults"))),
            Layer(f"params/presets/{preset}.yaml", preset_data),
            Layer(f"params/presets/{preset}.yaml per_method.{method}", per_method.get(method, {})),
            Layer(params_path.name, params), Layer("-S", extra)]


def load_config(params_path: str | Path = "params.yaml", overrides: dict | None = None) -> Config:
    """Resolve and validate the configuration described by ``params_path``.

    ``overrides`` (nested, same form as params.yaml) are applied last; tests and the search use it.
    """
    layers = resolve_layers(params_path, overrides)
    user = deep_merge(layers[-2].values, layers[-1].values)
    return config_from_dict(deep_merge(*(layer.values for layer in layers)), warn_about=set(user))


def knob_keys(method: str) -> set[str]:
    """The top-level params keys that ``method`` reads as its own knobs."""
    return {param_key(f) for f in dataclasses.fields(REGISTRY[method].Knobs)}


def check_foreign_knob(key: str, value: Any, method: str) -> None:
    """A knob ``method`` ignores must still be valid for a method that reads it, so that a bad value
    fails now rather than after a later switch of method, and never passes unnoticed."""
    owners = [m for m in sorted(REGISTRY) if key in knob_keys(m)]
    errors = []
    for owner in owners:
        try:
            build(REGISTRY[owner].Knobs, {key: value})
            return
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(f"{errors[0]} ({key} is read by {', '.join(owners)}; method {method!r} ignores it, but "
                      f"every knob is checked whichever method runs)")


def config_from_dict(merged: dict, warn_about: set[str] = frozenset()) -> Config:
    """Build and validate a :class:`Config` from one merged mapping (e.g. a saved ``config.yaml``).

    Knobs of other methods are dropped; those named in ``warn_about`` (what the user set) are
    reported with a warning naming them.
    """
    merged = dict(merged)
    method = merged.get("method", Config.method)
    if method not in REGISTRY:
        raise ConfigError(f"method={method!r} is not known; allowed: {', '.join(sorted(REGISTRY))}")
    own = knob_keys(method)
    others = set().union(*(knob_keys(m) for m in REGISTRY)) - own
    for key in sorted(others & set(merged)):
        check_foreign_knob(key, merged[key], method)
        if key in warn_about:
            log.warning("%s=%r is ignored: method %r does not use it", key, merged[key], method)
        merged.pop(key)
    knob_values = {k: merged.pop(k) for k in own if k in merged}
    config = build(Config, merged)
    return dataclasses.replace(config, knobs=build(REGISTRY[method].Knobs, knob_values))


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML next to a stage's outputs (atomically)."""
    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
