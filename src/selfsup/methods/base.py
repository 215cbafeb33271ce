"""The shared base of every method: a backbone, views in, named losses out."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from selfsup.config import Config
from selfsup.models.backbones import build_backbone


@dataclass
class MethodOutput:
    """``losses["loss"]`` is what the loop back-propagates; other entries are logged terms.

    ``embedding`` (B, D) is the detached output the collapse diagnostic is computed on.
    """

    losses: dict[str, torch.Tensor]
    embedding: torch.Tensor
    scalars: dict[str, float] = field(default_factory=dict)


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and ``Knobs`` (a schema dataclass of their top-level
    knobs), build their heads in ``__init__`` and implement :meth:`forward`.
    """

    name: str = ""
    Knobs: type = type(None)
    n_views: int = 2

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.knobs = cfg.knobs
        self.backbone = build_backbone(cfg.backbone)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum encoders, schedules of method state)."""
