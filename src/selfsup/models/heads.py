"""Projection and prediction heads: an MLP of configurable depth, width and normalisation."""

from __future__ import annotations

from torch import nn

from selfsup.config.image import ProjectorConfig


def norm_1d(kind: str, dim: int) -> nn.Module:
    """Feature normalisation by name: BatchNorm1d, GroupNorm (up to 32 groups), or none."""
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "gn":
        groups = max(1, min(32, dim // 4))
        while dim % groups:
            groups -= 1
        return nn.GroupNorm(groups, dim)
    return nn.Identity()


def mlp(in_dim: int, cfg: ProjectorConfig, norm: str | None = None) -> nn.Sequential:
    """``cfg.layers`` linear layers; hidden ones get a normalisation and ReLU.

    The hidden normalisation is BatchNorm when ``cfg.hidden_bn`` (none otherwise) unless ``norm``
    (``"bn"``, ``"gn"`` or ``"none"``) names it. With ``layers=1`` this is a single linear map.
    ``last_bn`` adds an affine-free BatchNorm after the output layer, as in Barlow Twins' projector
    and SimCLR v2.
    """
    hidden = norm or ("bn" if cfg.hidden_bn else "none")
    dims = [in_dim] + [cfg.hidden_dim] * (cfg.layers - 1) + [cfg.out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == cfg.layers - 1
        layers.append(nn.Linear(a, b, bias=not ((hidden != "none" and not last) or (last and cfg.last_bn))))
        if not last:
            if hidden != "none":
                layers.append(norm_1d(hidden, b))
            layers.append(nn.ReLU(inplace=True))
        elif cfg.last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)
