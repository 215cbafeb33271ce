"""Convolutional decoders of the generative methods: a feature map back to an image.

:class:`ConvDecoder` upsamples a (B, C, h, w) map by 2 per stage with 4x4 transposed convolutions
(the VQ-VAE paper's decoder, van den Oord et al. 2017, Sec. 4.1) to (B, 3, h * 2^stages, ...).
:class:`ResidualStack` is that paper's residual block (ReLU, 3x3 conv, ReLU, 1x1 conv), used by the
VQ-VAE's encoder and decoder.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualStack(nn.Module):
    """``n`` residual blocks x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU."""

    def __init__(self, channels: int, hidden: int, n: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))
            for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return torch.relu(x)


class ConvDecoder(nn.Module):
    """(B, in_channels, h, w) -> (B, 3, h * 2^stages, w * 2^stages) image logits / means.

    Each stage halves the channels (never below ``min_channels``) and doubles the side with a
    4x4 stride-2 transposed convolution followed by BatchNorm and ReLU; a 3x3 convolution maps the
    last stage to the 3 output channels, without an activation (the likelihood applies its own).
    """

    def __init__(self, in_channels: int, stages: int, min_channels: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(stages):
            out = max(c // 2, min_channels)
            layers += [nn.ConvTranspose2d(c, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, 3, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
