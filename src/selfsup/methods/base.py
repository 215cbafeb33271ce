"""The shared base of every method: a backbone, views in, named losses out.

A method is an ``nn.Module`` built from the resolved :class:`~selfsup.config.Config` and a
:class:`DataInfo`. The trainer calls ``forward(views, index)`` once per step, where ``views`` holds
the augmented batches by role (:class:`Views`: large views, multi-crop's small crops, BG_Swaps'
hard negative) and ``index`` the dataset indices of the batch's images (memory banks use them).
All state a method carries (memory banks, queues, prototypes, EMA teachers, centres) lives in
parameters or persistent buffers, so it is saved in checkpoints and restored on resume with the
rest of the ``state_dict``.

Momentum (EMA) copies are one mechanism of the base: a method declares each copy once with
:meth:`Method.momentum_copy` and gives its momentum schedule in :meth:`Method.ema_momentum`;
after every optimiser step :meth:`Method.on_step_end` moves every copy towards its online network,
theta_t <- m theta_t + (1 - m) theta_o (MoCo Eq. 2; BYOL Sec. 3.2; DINO Sec. 3.1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
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
class Views:
    """The augmented views of one batch of B images, by role (what ``Method.forward`` is handed).

    - ``large``: the ``n_views`` large views, each (B, 3, s, s) with s = ``views.size``;
    - ``small``: multi-crop's small crops (side ``views.multi_crop.size``); empty without multi-crop;
    - ``hard_negative``: BG_Swaps' hard negative (Ryali et al. 2021), per image a view of another
      image's subject on this image's background, or None;
    - ``masks``: each view's foreground mask (B, 1, h, w) in [0, 1], in a ``Views`` laid out like
      these, where the generator was asked for them; else None.
    """

    large: list[torch.Tensor]
    small: list[torch.Tensor] = field(default_factory=list)
    hard_negative: torch.Tensor | None = None
    masks: Views | None = None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Views:
        """``fn`` applied to every tensor, masks included (a move to a device, a memory format)."""
        return Views([fn(v) for v in self.large], [fn(v) for v in self.small],
                     None if self.hard_negative is None else fn(self.hard_negative),
                     None if self.masks is None else self.masks.map(fn))


@dataclass
class MethodOutput:
    """``losses["loss"]`` is what the loop back-propagates; other entries are logged terms.

    ``embedding`` (B, D) is the detached output the collapse diagnostic is computed on.
    """

    losses: dict[str, torch.Tensor]
    embedding: torch.Tensor


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and ``Knobs`` (a schema dataclass of their top-level
    knobs), build their heads in ``__init__`` and implement :meth:`forward`.

    Class attributes the trainer reads:

    - ``n_views``: how many large views of each image ``forward`` receives (``views.large``);
    - ``multi_crop``: whether ``forward`` also accepts the small crops of ``views.multi_crop``
      (``views.small``); a method without it refuses ``n_small > 0``;
    - ``hard_negatives``: whether ``forward`` accepts BG_Swaps' hard negative
      (``views.hard_negative``, there when ``views.background.swaps > 0``);
    - ``shuffle_bn``: whether the method relies on per-device BatchNorm statistics (MoCo's
      Shuffling BN), which global BatchNorm (``train.sync_bn``) would defeat;
    - ``generative``: whether the method reconstructs its input (:meth:`reconstruct`), which
      ``evaluate`` then measures (:mod:`selfsup.eval.generative`).
    """

    name: str = ""
    Knobs: type = type(None)
    n_views: int = 2
    multi_crop: bool = False
    hard_negatives: bool = False
    shuffle_bn: bool = False
    generative: bool = False

    def __init__(self, cfg: Config, info: DataInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.knobs = cfg.knobs
        self.info = info
        # (target, online, copy_buffers) of every momentum copy, in declaration order
        self.momentum_pairs: list[tuple[nn.Module, nn.Module, bool]] = []
        self.backbone = self.build_backbone()
        self.register_buffer("data_mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("data_std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)

    def build_backbone(self) -> nn.Module:
        """The encoder trained by this method; subclasses may change how it is built."""
        return build_backbone(self.cfg.backbone, self.cfg.views.size)

    def forward(self, views: Views, index: torch.Tensor) -> MethodOutput:  # pragma: no cover
        raise NotImplementedError

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Views back to RGB in [0, 1] (they arrive normalised by the dataset's mean and std)."""
        return x * self.data_std.to(x.dtype) + self.data_mean.to(x.dtype)

    def feature_extractor(self) -> nn.Module:
        """The module evaluation runs on normalised images (B, 3, H, W) -> features (B, D)."""
        return self.backbone

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A generative method's deterministic reconstruction of normalised images x, in [0, 1], and its
        latent quantities per image (``mu`` and ``kl`` for the VAEs, ``codes`` for VQ-VAE)."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct its input")

    def fixed_lr_modules(self) -> list[nn.Module]:
        """Sub-modules whose learning rate stays at its peak value instead of following the schedule."""
        return []

    def on_after_backward(self, step: int, total_steps: int) -> None:
        """Hook between ``backward`` and the optimiser step (e.g. freezing prototypes' gradients)."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step: every momentum copy follows its online network with the
        momentum of ``step``. Subclasses that add work (memory banks, step counters) call this too."""
        if self.momentum_pairs:
            self.ema_update_(self.ema_momentum(step, total_steps))

    def scheduled_values(self, step: int, total_steps: int) -> dict[str, float]:
        """The method's scheduled scalars at optimiser step ``step`` of ``total_steps``, which the loop
        logs: ``ema_momentum`` where the method has momentum copies; subclasses add their own."""
        return {"ema_momentum": self.ema_momentum(step, total_steps)} if self.momentum_pairs else {}

    def momentum_copy(self, online: nn.Module, *, copy_buffers: bool, target: nn.Module | None = None) -> nn.Module:
        """Declare a momentum (EMA) copy of ``online`` and return it, to be assigned to an attribute.

        The copy is ``target`` loaded with ``online``'s weights (a network built differently, e.g.
        without stochastic depth), or a deep copy of ``online``; it takes no gradient. After each
        optimiser step its parameters move towards ``online``'s (:meth:`ema_update_`); with
        ``copy_buffers`` its buffers (BatchNorm running statistics) are then copied from ``online``,
        without they stay the ones its own forward passes compute. Each method states its choice,
        from its reference code, in its docstring.
        """
        if target is None:
            target = copy.deepcopy(online)
        else:
            target.load_state_dict(online.state_dict())
        target.requires_grad_(False)
        self.momentum_pairs.append((target, online, copy_buffers))
        return target

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """m applied after optimiser step ``step`` of ``total_steps``; a method with momentum copies
        defines it (a constant, or a schedule from :mod:`selfsup.schedules`)."""
        raise NotImplementedError(f"{type(self).__name__} declares momentum copies but no ema_momentum schedule")

    @torch.no_grad()
    def ema_update_(self, m: float) -> None:
        """Every momentum copy's parameters to ``m * target + (1 - m) * online`` in one foreach lerp
        (target + (1 - m) (online - target)), then the buffers of the copies declared with ``copy_buffers``."""
        targets: list[torch.Tensor] = []
        onlines: list[torch.Tensor] = []
        buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for target, online, copy_buffers in self.momentum_pairs:
            for t, o in zip(target.parameters(), online.parameters(), strict=True):
                targets.append(t)
                onlines.append(o.detach())
            if copy_buffers:
                buffers += zip(target.buffers(), online.buffers(), strict=True)
        torch._foreach_lerp_(targets, onlines, 1.0 - m)
        if buffers:
            torch._foreach_copy_([t for t, _ in buffers], [o for _, o in buffers])
