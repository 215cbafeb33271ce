"""Typed, range-checked dataclass schemas built from plain dicts.

A schema is a frozen dataclass whose fields are declared with :func:`knob`, which records the
allowed range or choices. :func:`build` turns a nested dict into the dataclass, raising one
:class:`ConfigError` that names the dotted key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from selfsup.errors import ConfigError

T = TypeVar("T")


class Omitted:
    """Base of values that stand in for a section left out of a config; :func:`to_dict` skips them."""


def knob(default: Any = dataclasses.MISSING, *, gt: float | None = None, ge: float | None = None,
         lt: float | None = None, le: float | None = None, choices: typing.Sequence[Any] | None = None,
         key: str | None = None, doc: str = "") -> Any:
    """A dataclass field with validation metadata; ``key`` renames it in the params file."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "key": key, "doc": doc}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def param_key(field: dataclasses.Field) -> str:
    return field.metadata.get("key") or field.name


def allowed_text(field: dataclasses.Field, typ: Any) -> str:
    m = field.metadata
    if m.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    bounds = [f"> {m['gt']}" if m.get("gt") is not None else None,
              f">= {m['ge']}" if m.get("ge") is not None else None,
              f"< {m['lt']}" if m.get("lt") is not None else None,
              f"<= {m['le']}" if m.get("le") is not None else None]
    bounds = [b for b in bounds if b]
    name = getattr(typ, "__name__", str(typ))
    return f"{name} " + " and ".join(bounds) if bounds else f"a value of type {name}"


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}. "
                      f"Fix it in params.yaml or with `dvc exp run -S {key}=...`")


def _coerce(key: str, value: Any, typ: Any, allowed: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and type(None) in typing.get_args(typ):
            return None
        return _coerce(key, value, args[0], allowed)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            _fail(key, value, f"a mapping of {[param_key(f) for f in dataclasses.fields(typ)]}")
        return build(typ, value, prefix=key + ".")
    if origin in (tuple, list):
        args = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            _fail(key, value, allowed)
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            _fail(key, value, f"a list of {len(args)} values")
        elem = args[0]
        out = [_coerce(f"{key}[{i}]", v, elem, getattr(elem, "__name__", str(elem))) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, allowed)
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            _fail(key, value, allowed)
        return value
    if typ is bool:
        if not isinstance(value, bool):
            _fail(key, value, allowed)
        return value
    if typ is str:
        if not isinstance(value, str):
            _fail(key, value, allowed)
        return value
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            _fail(key, value, "a mapping")
        return value
    return value


def _check_range(key: str, value: Any, field: dataclasses.Field, allowed: str) -> None:
    m = field.metadata
    if value is None:
        return
    if m.get("choices") is not None and value not in m["choices"]:
        _fail(key, value, allowed)
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if ((m.get("gt") is not None and not v > m["gt"]) or (m.get("ge") is not None and not v >= m["ge"])
                or (m.get("lt") is not None and not v < m["lt"]) or (m.get("le") is not None and not v <= m["le"])):
            _fail(key, value, allowed)


def _over_default(field: dataclasses.Field, value: Any) -> Any:
    """A partial mapping for a section whose default is a configured instance keeps that instance's
    other values (e.g. ``elo.weights.rgb: {align: 0}`` leaves the other RGB weights at their defaults).

    One level only: nested sections get the same treatment when :func:`build` recurses into them,
    and a plain mapping value (such as ``search.space``) given by the user replaces the default.
    """
    if not isinstance(value, dict) or field.default_factory is dataclasses.MISSING:
        return value
    default = field.default_factory()
    return {**to_dict(default), **value} if dataclasses.is_dataclass(default) else value


def build(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {param_key(f): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; allowed keys under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))}")
    kwargs = {}
    for key, field in fields.items():
        typ = hints[field.name]
        if key not in data:
            continue
        allowed = allowed_text(field, typ)
        value = _coerce(prefix + key, _over_default(field, data[key]), typ, allowed)
        _check_range(prefix + key, value, field, allowed)
        kwargs[field.name] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"missing keys under {prefix or 'the top level'}: {exc}") from exc
    check = getattr(obj, "check", None)
    if callable(check):
        check(prefix)
    return obj


def to_dict(obj: Any) -> Any:
    """The params-file form of a schema object (field keys, lists for tuples)."""
    if dataclasses.is_dataclass(obj):
        return {param_key(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not isinstance(getattr(obj, f.name), Omitted)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
