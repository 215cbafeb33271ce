"""Optimisers: SGD, AdamW, and LARS (You, Gitman, Ginsburg 2017, arXiv:1708.03888), with the
per-group rules of the official recipes.

Parameters fall into up to four groups: regular weights; biases and normalisation parameters
(tensors of one dimension or less), which take no weight decay and no LARS adaptation when
``exclude_bias_and_norm`` is set (SimCLR, BYOL, Barlow Twins, DINO) and a learning rate
``bias_norm_lr_ratio`` times the weights' (Barlow Twins ``main.py``: ``--learning-rate-weights 0.2
--learning-rate-biases 0.0048``); and, for each of those, the parameters of the modules a method
keeps at a fixed learning rate (SimSiam's predictor, ``main_simsiam.py --fix-pred-lr``). Every group
records its rules (``lr_ratio``, ``fixed_lr``, ``decay``), and :func:`set_hyperparameters` turns the
step's scheduled learning rate and weight decay into each group's values.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from selfsup.config.image import OptimConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by eta * ||w|| / ||g + wd * w||.

    Groups with ``lars=False`` take plain SGD-with-momentum steps.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,  # noqa: ANN001
                 trust_coefficient: float = 1e-3) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm, g_norm = torch.norm(p), torch.norm(d_p)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                    d_p = d_p.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d_p.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float, exclude_bias_and_norm: bool,
                 bias_norm_lr_ratio: float = 1.0, fixed_lr: Iterable[nn.Module] = ()) -> list[dict]:
    """The non-empty groups of ``model``'s trainable parameters, regular weights first.

    Biases and norm parameters form their own group when they are excluded from decay and LARS or
    take another learning rate; parameters of the ``fixed_lr`` modules form their own groups whose
    learning rate does not follow the schedule.
    """
    fixed = {id(p) for m in fixed_lr for p in m.parameters()}
    split = exclude_bias_and_norm or bias_norm_lr_ratio != 1.0
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault((split and p.ndim <= 1, id(p) in fixed), []).append(p)
    groups = []
    for is_fixed in (False, True):
        for bias_norm in (False, True):
            params = buckets.get((bias_norm, is_fixed))
            if not params:
                continue
            excluded = bias_norm and exclude_bias_and_norm
            groups.append({"params": params, "weight_decay": 0.0 if excluded else weight_decay,
                           "decay": not excluded, "lars": not excluded,
                           "lr_ratio": bias_norm_lr_ratio if bias_norm else 1.0, "fixed_lr": is_fixed})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float, fixed_lr: Iterable[nn.Module] = ()
                    ) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` over :func:`param_groups`, each group at ``lr`` times its ratio."""
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_and_norm, cfg.bias_norm_lr_ratio, fixed_lr)
    for g in groups:
        g["lr"] = lr * g["lr_ratio"]
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, trust_coefficient=cfg.trust_coefficient)
    for g in groups:
        g.pop("lars")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, peak_lr: float, weight_decay: float) -> None:
    """One step's values: each group's learning rate is the scheduled ``lr`` (``peak_lr`` for a
    fixed-rate group) times its ``lr_ratio``; groups that decay take ``weight_decay``."""
    for g in optimizer.param_groups:
        g["lr"] = (peak_lr if g["fixed_lr"] else lr) * g["lr_ratio"]
        if g["decay"]:
            g["weight_decay"] = weight_decay
