"""The shared base of every method: a backbone, views in, named losses out.

A method is an ``nn.Module`` built from the resolved :class:`~selfsup.config.Config` and a
:class:`DataInfo`. The trainer calls ``forward(views, index)`` once per step, where ``views`` is
the list of augmented batches (``n_views`` large views, then ``views.multi_crop.n_small`` small
ones when the method accepts multi-crop) and ``index`` holds the dataset indices of the batch's
images (memory banks use them). All state a method carries (memory banks, queues, prototypes,
EMA teachers, centres) lives in parameters or persistent buffers, so it is saved in checkpoints
and restored on resume with the rest of the ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from selfsup.config import Config
from selfsup.models.backbones import build_backbone


@dataclass(frozen=True)
class DataInfo:
    """What a method may know about its pretraining data."""

    n_images: int
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    @classmethod
    def from_meta(cls, n_images: int, meta: dict) -> DataInfo:
        return cls(n_images, tuple(meta["mean"]), tuple(meta["std"]))


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

    Class attributes the trainer reads:

    - ``n_views``: how many large views of each image ``forward`` receives;
    - ``multi_crop``: whether ``forward`` also accepts the small crops of ``views.multi_crop``
      (appended after the large views); a method without it refuses ``n_small > 0``;
    - ``hard_negatives``: whether ``forward`` accepts BG_Swaps' hard negative, one more view of a
      different image per image, last in ``views`` when ``views.background.swaps > 0``.
    """

    name: str = ""
    Knobs: type = type(None)
    n_views: int = 2
    multi_crop: bool = False
    hard_negatives: bool = False

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.knobs = cfg.knobs
        self.info = info
        self.backbone = self.build_backbone()
        self.register_buffer("data_mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("data_std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)

    def build_backbone(self) -> nn.Module:
        """The encoder trained by this method; subclasses may change how it is built."""
        return build_backbone(self.cfg.backbone, self.cfg.views.size)

    def forward(self, views: list[torch.Tensor], index: torch.Tensor) -> MethodOutput:  # pragma: no cover
        raise NotImplementedError

    def split_hard_negative(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``(views, hard_negative)``: BG_Swaps' last view taken off when ``views.background.swaps > 0``."""
        if self.hard_negatives and self.cfg.views.background.swaps > 0:
            return views[:-1], views[-1]
        return views, None

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Views back to RGB in [0, 1] (they arrive normalised by the dataset's mean and std)."""
        return x * self.data_std.to(x.dtype) + self.data_mean.to(x.dtype)

    def feature_extractor(self) -> nn.Module:
        """The module evaluation runs on normalised images (B, 3, H, W) -> features (B, D)."""
        return self.backbone

    def on_after_backward(self, step: int, total_steps: int) -> None:
        """Hook between ``backward`` and the optimiser step (e.g. freezing prototypes' gradients)."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum encoders, schedules of method state)."""
