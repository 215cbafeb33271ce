"""Projection heads: an MLP of configurable depth, width and BatchNorm placement."""

from __future__ import annotations

from torch import nn

from selfsup.config import ProjectorConfig


def mlp(in_dim: int, cfg: ProjectorConfig) -> nn.Sequential:
    """``cfg.layers`` linear layers; hidden ones get BN (if ``hidden_bn``) and ReLU.

    With ``layers=1`` this is a single linear map. ``last_bn`` adds an affine-free BatchNorm after
    the output layer, as in Barlow Twins' projector and SimCLR v2.
    """
    dims = [in_dim] + [cfg.hidden_dim] * (cfg.layers - 1) + [cfg.out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == cfg.layers - 1
        layers.append(nn.Linear(a, b, bias=not ((cfg.hidden_bn and not last) or (last and cfg.last_bn))))
        if not last:
            if cfg.hidden_bn:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
        elif cfg.last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)
