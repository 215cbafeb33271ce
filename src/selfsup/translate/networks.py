"""Generator, discriminator and patch-projection networks for unpaired translation of 32x32 images.

Sources of each detail:

* :class:`ResnetGenerator` is the ResNet generator of CycleGAN (Zhu, Park, Isola, Efros, "Unpaired
  Image-to-Image Translation using Cycle-Consistent Adversarial Networks", ICCV 2017, Appendix 7.2,
  after Johnson et al. 2016): a reflection-padded 7x7 stem, stride-2 3x3 downsampling, residual blocks,
  stride-2 3x3 transposed-convolution upsampling and a 7x7 head with tanh, instance norm throughout.
  It is scaled for 32x32 inputs (width 32, 4 residual blocks instead of 64 and 9). CUT's anti-aliased
  down/upsampling (Park et al. 2020, Appendix C.1) is left out; the convolutions match CycleGAN's.
* :attr:`ResnetGenerator.nce_layers` scales the layers CUT taps for PatchNCE (Park, Efros, Zhang, Zhu,
  "Contrastive Learning for Unpaired Image-to-Image Translation", ECCV 2020, Sec. 3.2 and the
  official ``--nce_layers 0,4,8,12,16``: the input, the two downsampling stages and the middle (5th of
  9) residual block) to this depth; the mapping is given in the class docstring.
* :class:`PatchGANDiscriminator` is CycleGAN's / pix2pix's PatchGAN (Isola et al. 2017): 4x4
  convolutions, LeakyReLU(0.2), instance norm on every layer but the first, with ``n_layers=2``
  instead of 3 so that its patches fit a 32x32 image.
* :class:`PatchHead` is CUT's ``PatchSampleF`` (Sec. 3.2, "we pass the features through a two-layer
  MLP"): one Linear-ReLU-Linear MLP to 256 dimensions per tapped layer, L2-normalised, applied to
  patch locations sampled once per batch and shared by the query and key images. DCLGAN (Han, Shoeiby,
  Petersson, Armin, "Dual Contrastive Learning for Unpaired Image-to-Image Translation", CVPRW 2021)
  uses one such head per generator.
* :func:`init_weights` is the official CUT default (``--init_type xavier --init_gain 0.02``).

Images enter and leave every network in [0, 1]; the networks map them to [-1, 1] (``2x - 1``) on the
way in, and the generator maps its tanh output back with ``(tanh + 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError


class ResnetBlock(nn.Module):
    """``x + IN(conv3x3(pad(ReLU(IN(conv3x3(pad(x)))))))`` with reflection padding (CycleGAN)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN/CUT ResNet generator for 32x32 images; maps [0, 1] images to [0, 1] images.

    ``self.layers`` holds one stage per element, in order: the stem (reflection pad 3, 7x7 conv to
    ``width``, IN, ReLU), ``n_down`` downsampling blocks (3x3 stride-2 conv doubling the channels, IN,
    ReLU), ``n_blocks`` :class:`ResnetBlock`, ``n_down`` upsampling blocks (3x3 stride-2 transposed
    conv with output padding 1, halving the channels and exactly doubling the size, IN, ReLU) and the
    head (reflection pad 3, 7x7 conv to ``out_channels``, tanh).

    Taps (the ids of :meth:`encode` and :meth:`channels`): tap 0 is the input scaled to [-1, 1]
    (CUT's layer 0), and tap ``i >= 1`` is the output of ``self.layers[i - 1]``, up to tap
    ``len(self.layers)``, the tanh output. ``nce_layers`` = (0, 1, 2, ..., n_down + 1,
    n_down + 2 + n_blocks // 2): the input, the stem, every downsampling block and residual block
    ``n_blocks // 2`` (0-based; CUT's 5th of 9). With the defaults (n_down=2, n_blocks=4) that is
    (0, 1, 2, 3, 6): input (3 ch, 32x32), stem (32 ch, 32x32), down 1 (64 ch, 16x16), down 2 (128 ch,
    8x8) and the 3rd residual block (128 ch, 8x8).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 32, n_blocks: int = 4,
                 n_down: int = 2) -> None:
        super().__init__()
        if n_blocks < 1 or n_down < 0:
            raise ConfigError(f"ResnetGenerator needs n_blocks >= 1 and n_down >= 0, got {n_blocks} and {n_down}")
        stages: list[nn.Module] = [nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), nn.InstanceNorm2d(width), nn.ReLU(inplace=True),
        )]
        tap_channels = [in_channels, width]
        c = width
        for _ in range(n_down):
            stages.append(nn.Sequential(
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU(inplace=True),
            ))
            c *= 2
            tap_channels.append(c)
        for _ in range(n_blocks):
            stages.append(ResnetBlock(c))
            tap_channels.append(c)
        for _ in range(n_down):
            stages.append(nn.Sequential(
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(c // 2),
                nn.ReLU(inplace=True),
            ))
            c //= 2
            tap_channels.append(c)
        stages.append(nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()))
        tap_channels.append(out_channels)
        self.layers = nn.Sequential(*stages)
        self._tap_channels = tuple(tap_channels)
        self.nce_layers: tuple[int, ...] = (0, *range(1, n_down + 2), n_down + 2 + n_blocks // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate (B, in_channels, H, W) images in [0, 1] to (B, out_channels, H, W) images in [0, 1]."""
        return (self.layers(2 * x - 1) + 1) / 2

    def _check_taps(self, layer_ids: Sequence[int]) -> None:
        bad = [i for i in layer_ids if not 0 <= i <= len(self.layers)]
        if bad:
            raise ConfigError(f"generator taps must lie in 0..{len(self.layers)}, got {bad}")

    def encode(self, x: torch.Tensor, layer_ids: Sequence[int]) -> list[torch.Tensor]:
        """The features at taps ``layer_ids`` (in that order) of images ``x`` in [0, 1].

        Runs the stages only up to the deepest requested tap.
        """
        self._check_taps(layer_ids)
        if not layer_ids:
            return []
        h = 2 * x - 1
        taps = {0: h}
        for i, stage in enumerate(self.layers[: max(layer_ids)], start=1):
            h = stage(h)
            taps[i] = h
        return [taps[i] for i in layer_ids]

    def channels(self, layer_ids: Sequence[int]) -> list[int]:
        """The channel count of each tap in ``layer_ids``."""
        self._check_taps(layer_ids)
        return [self._tap_channels[i] for i in layer_ids]


class PatchGANDiscriminator(nn.Module):
    """CycleGAN's PatchGAN on [0, 1] images: a (B, 1, H/2^n_layers - 2, W/2^n_layers - 2) map of scores.

    Layers: 4x4 stride-2 conv to ``width`` + LeakyReLU(0.2); ``n_layers - 1`` 4x4 stride-2 convs doubling
    the channels (capped at 8 * width) + IN + LeakyReLU; a 4x4 stride-1 conv + IN + LeakyReLU; a 4x4
    stride-1 conv to one channel. All convs pad by 1. Receptive field: each score sees a
    9 * 2^n_layers - 2 pixel square, 34x34 for the default ``n_layers=2`` (70x70 for CycleGAN's 3).
    A 32x32 image gives a 6x6 map; with ``n_layers=2`` score ``p`` (per axis) covers input pixels
    ``4p - 11 .. 4p + 22`` clipped to the image (0..22 for the first, 9..31 for the last), so the
    scores judge overlapping regions of about two thirds of the image each.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"PatchGANDiscriminator needs n_layers >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        c = width
        for n in range(1, n_layers + 1):
            out = width * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(c, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2, True)]
            c = out
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch scores (unbounded logits, for the LSGAN losses) of images ``x`` in [0, 1]."""
        return self.layers(2 * x - 1)


class PatchHead(nn.Module):
    """CUT's patch sampler and projection: one Linear-ReLU-Linear MLP per tapped layer, L2-normalised.

    Args:
        channels: the channel count of each tapped layer (e.g. ``generator.channels(generator.nce_layers)``).
        head_dim: the output dimension of every MLP (256 in CUT).
    """

    def __init__(self, channels: Sequence[int], head_dim: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, head_dim), nn.ReLU(inplace=True), nn.Linear(head_dim, head_dim))
            for c in channels
        )

    def forward(self, features: list[torch.Tensor], n_patches: int, patch_ids: list[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project ``min(n_patches, H*W)`` locations of each (B, C, H, W) feature map.

        Locations index the flattened map (``h * W + w``). Without ``patch_ids`` each layer draws a
        random permutation of its H*W locations (from ``generator`` when given) and keeps the first
        ones; every image in the batch uses the same locations, as in the official code. Pass the
        returned ids back to project another image set (e.g. the translated images, whose features
        are the queries) at the same locations.

        Returns:
            (list of (B, N, head_dim) unit-length embeddings, list of (N,) location ids), one per layer.
        """
        if len(features) != len(self.mlps):
            raise ConfigError(f"PatchHead has {len(self.mlps)} MLPs but got {len(features)} feature maps")
        if n_patches < 1:
            raise ConfigError(f"n_patches must be >= 1, got {n_patches}")
        if patch_ids is not None and len(patch_ids) != len(features):
            raise ConfigError(f"got {len(patch_ids)} patch id tensors for {len(features)} feature maps")
        embeddings, used_ids = [], []
        for k, (feat, mlp) in enumerate(zip(features, self.mlps, strict=True)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if patch_ids is None:
                device = generator.device if generator is not None else feat.device
                ids = torch.randperm(flat.shape[1], generator=generator, device=device)[: min(n_patches, flat.shape[1])]
            else:
                ids = patch_ids[k]
            ids = ids.to(feat.device)
            embeddings.append(F.normalize(mlp(flat[:, ids, :]), dim=-1))
            used_ids.append(ids)
        return embeddings, used_ids


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Initialise ``module`` in place as the official CUT code does by default.

    Conv, transposed-conv and linear weights: xavier-normal with ``gain`` (std
    ``gain * sqrt(2 / (fan_in + fan_out))``); their biases: 0. Affine norm layers: weight 1, bias 0.
    """

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    module.apply(init)
