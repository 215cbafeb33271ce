"""The ELo modality networks and task heads (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1).

The paper gives every modality (RGB, grayscale, optical flow, audio) its own network and trains
them jointly; the RGB one is kept. Here they are small CPU-sized encoders of 3 stages each:

- :class:`VideoEncoder` (RGB, grayscale, flow): 3D convolutions over (C, T, H, W); stage 1 halves
  the space, stages 2 and 3 halve time and space. Widths w, 2w, 4w.
- :class:`AudioEncoder`: 2D convolutions over the log-mel laid out as (1, time, mel); every stage
  halves both.

Each returns an :class:`EncoderOutput`: the 3 stage maps (distillation targets), per-time-step
features (B, T', D) of the last stage averaged over space (or frequency) and mapped to
``embed_dim`` D, and the clip embedding (B, D), their mean over time. GroupNorm keeps every clip
independent of the others in its batch, so a classifier cannot read its task's label from batch
statistics, and eval mode computes what training computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VIDEO_STRIDES = ((1, 2, 2), (2, 2, 2), (2, 2, 2))
AUDIO_STRIDES = ((2, 2), (2, 2), (2, 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def _block(conv: type[nn.Module], c_in: int, c_out: int, stride: tuple[int, ...], extra: bool) -> nn.Sequential:
    """A strided 3x3(x3) convolution, GroupNorm, ReLU; ``extra`` adds an unstrided one after it."""
    layers = [conv(c_in, c_out, 3, stride=stride, padding=1, bias=False), _norm(c_out), nn.ReLU(inplace=True)]
    if extra:
        layers += [conv(c_out, c_out, 3, padding=1, bias=False), _norm(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@dataclass
class EncoderOutput:
    """``stages``: the 3 stage maps (B, C_l, T_l, ...); ``steps``: (B, T', D); ``embedding``: (B, D)."""

    stages: list[torch.Tensor]
    steps: torch.Tensor
    embedding: torch.Tensor


class _Encoder(nn.Module):
    """Shared body: 3 stages, then per-step features of the last stage (dims 3.. are averaged away)."""

    def __init__(self, conv: type[nn.Module], strides: tuple[tuple[int, ...], ...], in_channels: int,
                 width: int, embed_dim: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.widths = (width, 2 * width, 4 * width)
        c_in = in_channels
        stages = []
        for i, (c_out, stride) in enumerate(zip(self.widths, strides, strict=True)):
            stages.append(_block(conv, c_in, c_out, stride, extra=i > 0))  # stage 1 is the costly one
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.step_proj = nn.Linear(self.widths[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        steps = self.step_proj(x.flatten(3).mean(3).transpose(1, 2))
        return EncoderOutput(maps, steps, steps.mean(1))


class VideoEncoder(_Encoder):
    """(B, C, T, S, S) clips -> :class:`EncoderOutput`; T' = ceil(T / 4). ``input_size`` is S."""

    def __init__(self, in_channels: int, width: int, embed_dim: int, input_size: int) -> None:
        super().__init__(nn.Conv3d, VIDEO_STRIDES, in_channels, width, embed_dim)
        self.input_size = input_size


class AudioEncoder(_Encoder):
    """(B, 1, A*T, n_mels) log-mel -> :class:`EncoderOutput`; T' = A*T / 8 time steps."""

    def __init__(self, width: int, embed_dim: int) -> None:
        super().__init__(nn.Conv2d, AUDIO_STRIDES, 1, width, embed_dim)


class Decoder(nn.Module):
    """Last stage map -> a clip of ``out_channels`` (the reconstruct / predict / cross_predict heads).

    Three transposed convolutions whose kernel equals their stride (no overlap: cheap), mirroring
    the encoder's strides, with GroupNorm and ReLU between. The input map is first resized
    (nearest) to the target size / total stride, so a decoder can forecast N frames from the
    map of T - N past frames; the output is cropped to the target size.
    """

    def __init__(self, strides: tuple[tuple[int, ...], ...], in_channels: int, width: int, out_channels: int) -> None:
        super().__init__()
        conv = nn.ConvTranspose3d if len(strides[0]) == 3 else nn.ConvTranspose2d
        self.factor = tuple(math.prod(s) for s in zip(*strides, strict=True))
        up = tuple(reversed(strides))
        self.layers = nn.Sequential(
            conv(in_channels, 2 * width, up[0], stride=up[0]), _norm(2 * width), nn.ReLU(inplace=True),
            conv(2 * width, width, up[1], stride=up[1]), _norm(width), nn.ReLU(inplace=True),
            conv(width, out_channels, up[2], stride=up[2]),
        )

    def forward(self, z: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """``z`` (B, C, ...) -> (B, out_channels, *size)."""
        start = tuple(math.ceil(s / f) for s, f in zip(size, self.factor, strict=True))
        if tuple(z.shape[2:]) != start:
            z = F.interpolate(z, size=start, mode="nearest")
        out = self.layers(z)
        return out[(..., *(slice(0, s) for s in size))]


class TemporalHead(nn.Module):
    """Per-step features (B, T', C) -> one logit per clip (order, reverse, align heads).

    A width-2 temporal convolution sees neighbouring steps (so order and direction are visible),
    then ReLU, a mean over time (any T') and a linear layer.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, hidden, kernel_size=2, padding=1)
        self.out = nn.Linear(hidden, 1)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.conv(steps.transpose(1, 2))).mean(2)).squeeze(1)
