"""Backbones: a small CNN for CPUs, torchvision ResNet-18/50 with an optional CIFAR stem, and ViTs.

Every backbone maps images (B, 3, H, W) to features (B, D) and exposes ``feature_dim``. The CIFAR
stem (3x3 stride-1 first convolution, no max-pool) is the usual change for 32x32 inputs, as in
SimCLR's CIFAR-10 experiments (Chen et al., 2020, Appendix B.9). Convolutional backbones also
expose ``feature_map(x)`` (B, C, h, w), the last map before global pooling (Deep InfoMax's local
features).

``norm="gn_ws"`` is GroupNorm with Weight Standardisation of every convolution (Qiao et al. 2019,
arXiv:1903.10520, Eq. 5: W_hat = (W - mean(W)) / std(W) over each output filter), the BatchNorm-free
encoder of "BYOL works even without batch statistics" (Richemond et al. 2020, arXiv:2010.10241).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize

from selfsup.config.image import BackboneConfig
from selfsup.errors import ConfigError


class WeightStandardization(nn.Module):
    """Parametrisation of a conv weight: zero mean and unit std over each output filter."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.flatten(1)
        mean = flat.mean(1).view(-1, *([1] * (w.ndim - 1)))
        std = flat.std(1, unbiased=False).view(-1, *([1] * (w.ndim - 1)))
        return (w - mean) / (std + self.eps)


def standardize_conv_weights(module: nn.Module) -> nn.Module:
    """Register :class:`WeightStandardization` on every ``Conv2d`` weight of ``module`` (in place)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and not parametrize.is_parametrized(m, "weight"):
            parametrize.register_parametrization(m, "weight", WeightStandardization())
    return module


def norm_layer(kind: str, channels: int) -> nn.Module:
    """2d normalisation by name: BatchNorm, GroupNorm (up to 32 groups of >= 4 channels) or none.

    ``gn_ws`` gives the GroupNorm; the weight standardisation is applied by the backbone builder.
    """
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind in ("gn", "gn_ws"):
        groups = max(1, min(32, channels // 4))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"backbone.norm={kind!r} is not known; allowed: bn, gn, gn_ws, none")


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
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 8 * w

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))


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

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(cfg: BackboneConfig, image_size: int = 32) -> nn.Module:
    """The backbone named by ``cfg.name``, randomly initialised; ``image_size`` sizes a ViT's grid."""
    if cfg.name == "small_cnn":
        net = SmallCNN(cfg.width, cfg.norm)
    elif cfg.name in ("resnet18", "resnet50"):
        net = ResNet(int(cfg.name[6:]), cfg.cifar_stem, cfg.norm)
    elif cfg.name in ("vit_tiny", "vit_small"):
        from selfsup.models.vit import build_vit

        return build_vit(cfg.name, image_size=image_size, patch_size=cfg.patch_size, drop_path=cfg.drop_path)
    else:
        raise ConfigError(f"backbone.name={cfg.name!r} is not known; allowed: small_cnn, resnet18, resnet50, "
                          f"vit_tiny, vit_small")
    return standardize_conv_weights(net) if cfg.norm == "gn_ws" else net
