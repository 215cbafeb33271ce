"""Backbones: a small CNN for CPUs and torchvision ResNet-18/50 with an optional CIFAR stem.

Every backbone maps images (B, 3, H, W) to features (B, D) and exposes ``feature_dim``. The CIFAR
stem (3x3 stride-1 first convolution, no max-pool) is the usual change for 32x32 inputs, as in
SimCLR's CIFAR-10 experiments (Chen et al., 2020, Appendix B.9).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from selfsup.config import BackboneConfig
from selfsup.errors import ConfigError


def norm_layer(kind: str, channels: int) -> nn.Module:
    """2d normalisation by name: BatchNorm, GroupNorm (up to 32 groups of >= 4 channels) or none."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        groups = max(1, min(32, channels // 4))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"backbone.norm={kind!r} is not known; allowed: bn, gn, none")


def _conv(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=norm == "none"),
                         norm_layer(norm, cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Six 3x3 convolutions, three of stride 2, then global average pooling.

    Channels are w, 2w, 2w, 4w, 4w, 8w; the features have 8w dimensions. Downsampling early keeps
    a 32x32 forward+backward cheap on a CPU.
    """

    def __init__(self, width: int = 32, norm: str = "bn") -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w, 1, norm),
            _conv(w, 2 * w, 2, norm), _conv(2 * w, 2 * w, 1, norm),
            _conv(2 * w, 4 * w, 2, norm), _conv(4 * w, 4 * w, 1, norm),
            _conv(4 * w, 8 * w, 2, norm),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ResNet(nn.Module):
    """torchvision ResNet trunk without its classifier."""

    def __init__(self, depth: int, cifar_stem: bool, norm: str) -> None:
        super().__init__()
        ctor = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
        net = ctor(weights=None, norm_layer=lambda c: norm_layer(norm, c))
        if cifar_stem:
            net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """The backbone named by ``cfg.name``, randomly initialised."""
    if cfg.name == "small_cnn":
        return SmallCNN(cfg.width, cfg.norm)
    if cfg.name in ("resnet18", "resnet50"):
        return ResNet(int(cfg.name[6:]), cfg.cifar_stem, cfg.norm)
    raise ConfigError(f"backbone.name={cfg.name!r} is not known; allowed: small_cnn, resnet18, resnet50")
