"""What each DVC stage reads of the configuration, and the resolved config a stage is handed.

``check_params`` resolves params.yaml once (method defaults < preset < params.yaml, with the schema
defaults in :mod:`selfsup.config` beneath them all) and writes, for every stage, the values of
exactly the sections that stage reads to ``results/config/<stage>.yaml``. Each stage depends on its
own file instead of on params.yaml, the presets and the method defaults, so DVC reruns a stage when
(and only when) a value it reads changes, wherever that value was set: ``-S lambda=5e-3`` with
``method=simclr`` reruns nothing past ``check_params``, and a changed schema default reruns exactly
the stages whose file holds it.

At run time a stage's :class:`~selfsup.config.Config` holds :class:`Undeclared` in every section
the stage does not declare, and any use of one raises :class:`ConfigError`. A read that is missing
from :data:`STAGE_SECTIONS` therefore fails loudly in the tests instead of leaving a stale result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NoReturn

import yaml

from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.io import atomic_write_text
from selfsup.params import config_from_dict, deep_merge, load_params_yaml
from selfsup.schema import Omitted, param_key

# The sections (top-level keys, or dotted sub-sections) each stage reads. ``knobs`` is the chosen
# method's own knobs (``lambda``, ``temperature``, ...), which are top-level keys in params.yaml.
IMAGE_RUN = ("seed", "dataset", "method", "preset", "epochs", "batch_size", "lr", "knobs", "backbone", "projector",
             "views", "optim", "train")
# The evaluation of frozen features (and fine-tuning); ``eval.supervised`` is the baseline stage's alone.
PROBES = ("eval.batch_size", "eval.linear", "eval.knn", "eval.finetune")
# The view augmentation of one plain view (the baseline's supervised model): no multi-crop, no background.
PLAIN_VIEWS = ("views.backend", "views.size", "views.crop_scale", "views.crop_ratio", "views.hflip",
               "views.color_jitter", "views.grayscale", "views.blur", "views.solarize")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare_images": ("seed", "dataset", "data"),
    "baseline": ("seed", "epochs", "batch_size", "backbone", *PLAIN_VIEWS, "eval", "train.device",
                 "train.channels_last"),
    "segment": ("segment",),
    "backgrounds": ("views.background", "segment.inpaint_radius", "segment.dilate"),
    "pretrain": IMAGE_RUN,
    "evaluate": ("seed", *PROBES, "train.device"),
    "prepare_video": ("seed", "video.dataset", "video.synthetic_actions", "video.videofolder"),
    "extract": ("video.dataset", "video.synthetic_actions.frames", "video.synthetic_actions.fps", "video.extract"),
    "search": ("seed", "search", "zipf", *PROBES, "elo", "train"),
    "elo_pretrain": ("seed", "elo", "train"),
    "elo_evaluate": ("seed", *PROBES, "zipf", "elo.batch_size", "train.device"),
    "subsets": ("subsets",),
    "finetune": ("seed", "subsets", "finetune", "train.device"),
    "distill": ("seed", "distill", "train.device"),
    "selftrain": ("seed", "selftrain", "train.device"),
    "translate": ("seed", "translate", "train.device", "train.threads"),
    "translate_eval": ("seed", "translate", "segment", "train.device", "train.threads"),
    "figures": (),
}
# ``search.target=image`` trains the image method in every trial, so it reads what pretrain reads.
SEARCH_IMAGE = ("seed", "search", "zipf", *PROBES, *IMAGE_RUN)
# Keys that choose which lower layers (method defaults, preset) resolve; they cannot change on top of
# an already resolved file.
LAYER_KEYS = ("method", "preset")


def stage_sections(stage: str, cfg: Config | None = None) -> tuple[str, ...]:
    """The sections ``stage`` reads (for ``search``, what its target trains)."""
    if stage not in STAGE_SECTIONS:
        raise ConfigError(f"stage {stage!r} has no declared params; known stages: {', '.join(STAGE_SECTIONS)}")
    if stage == "search" and cfg is not None and cfg.search.target == "image":
        return SEARCH_IMAGE
    return STAGE_SECTIONS[stage]


class Undeclared(Omitted):
    """Stands in for a config value the stage did not declare; every use of it raises ConfigError."""

    __slots__ = ("_key", "_stage")

    def __init__(self, key: str, stage: str) -> None:
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_stage", stage)

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        key, stage = object.__getattribute__(self, "_key"), object.__getattribute__(self, "_stage")
        raise ConfigError(f"stage {stage!r} read `{key}`, which is not among the params it declares; add "
                          f"{key!r} to selfsup.stage_config.STAGE_SECTIONS[{stage!r}] so that DVC reruns the stage "
                          f"when it changes")

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):  # copy, pickle and friends probing for optional hooks
            raise AttributeError(name)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{object.__getattribute__(self, '_key')}: not read by stage {object.__getattribute__(self, '_stage')}>"

    __bool__ = __int__ = __float__ = __index__ = __str__ = __format__ = __hash__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = _refuse
    __iter__ = __len__ = __contains__ = __getitem__ = __call__ = _refuse


def _restrict(obj: Any, declared: tuple[str, ...], stage: str, prefix: str = "") -> Any:
    changes = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("internal") and f.name != "knobs":
            continue
        key = prefix + (f.name if f.name == "knobs" else param_key(f))
        value = getattr(obj, f.name)
        if key in declared:
            continue
        if dataclasses.is_dataclass(value) and any(d.startswith(key + ".") for d in declared):
            changes[f.name] = _restrict(value, declared, stage, key + ".")
        else:
            changes[f.name] = Undeclared(key, stage)
    return dataclasses.replace(obj, **changes)


def restrict(cfg: Config, stage: str) -> Config:
    """``cfg`` with every section ``stage`` does not declare replaced by :class:`Undeclared`."""
    return _restrict(cfg, stage_sections(stage, cfg), stage)


def stage_params(cfg: Config, stage: str) -> dict:
    """The resolved values ``stage`` reads, in params-file form (what ``check_params`` writes for it)."""
    return restrict(cfg, stage).to_dict()


def write_stage_params(cfg: Config, stage: str, path: Path) -> None:
    """Write ``stage``'s resolved params to ``path``; an unchanged file is left untouched."""
    text = (f"# The resolved params the `{stage}` stage reads, written by check_params. Edit params.yaml, "
            f"not this file.\n" + yaml.safe_dump(stage_params(cfg, stage), sort_keys=False))
    if not (Path(path).is_file() and Path(path).read_text() == text):
        atomic_write_text(Path(path), text)


def load_stage_params(path: Path, stage: str, overrides: dict | None = None) -> Config:
    """The config ``stage`` runs with: its resolved file with ``overrides`` (``-S``, overlays) on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"resolved params {path} not found; run `dvc repro check_params` (or "
                          f"`python stages/check_params.py`) to write it")
    resolved = load_params_yaml(path.read_text()) or {}
    if not isinstance(resolved, dict):
        raise ConfigError(f"resolved params {path} must hold a mapping; rerun check_params to rewrite it")
    overrides = overrides or {}
    for key in LAYER_KEYS:
        if key in overrides and overrides[key] != resolved.get(key):
            raise ConfigError(f"{key}={overrides[key]!r} cannot be set on top of the resolved params {path} "
                              f"({key}={resolved.get(key)!r}): it chooses the defaults beneath params.yaml. "
                              f"Resolve it first: `python stages/check_params.py -S {key}={overrides[key]} ...`")
    return restrict(config_from_dict(deep_merge(resolved, overrides)), stage)
