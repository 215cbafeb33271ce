"""The model files the training stages write and the evaluation stages read.

A model file is one ``torch.save`` of a dict: ``config`` (the resolved config that built the model),
``state`` (its ``state_dict``) and whatever else the writer adds (``pretrain``: the view size and
data facts). It is written atomically and read with ``weights_only=True``; a file that is missing,
truncated or written by something else raises a :class:`DataError` that names the stage to rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selfsup.config import Config
from selfsup.errors import DataError
from selfsup.io import atomic_write
from selfsup.params import config_from_dict


def save_model_file(path: Path, cfg: Config, state: dict[str, torch.Tensor], **extra: Any) -> None:
    """Write ``state`` with the config that built it (and ``extra`` entries) to ``path`` atomically."""
    payload = {"config": cfg.to_dict(), "state": state, **extra}
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_model_file(path: Path, stage: str) -> tuple[dict[str, Any], Config]:
    """The saved dict and its config; ``stage`` names the stage that writes such files."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cfg = config_from_dict(saved["config"])
        saved["state"]  # noqa: B018 - a file without weights is not a model file
    except (OSError, RuntimeError, KeyError, EOFError, TypeError) as exc:
        raise DataError(f"{path} is not a model written by the {stage} stage ({exc}); "
                        f"rerun it with `dvc repro {stage}`") from exc
    return saved, cfg
