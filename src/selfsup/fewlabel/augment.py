"""Augmentation strength levels of the few-label stages, standing in for Zoph et al.'s Augment-S1..S4.

"Rethinking Pre-training and Self-training" (Zoph et al., NeurIPS 2020, Sec. 3.1) orders four COCO
policies: S1 FlipCrop, S2 AutoAugment, S3 AutoAugment with scale jitter, S4 RandAugment with scale
jitter. Here, on 32-pixel digits (never mirrored, so no flip):

- ``none``: the image as it is;
- ``s1``: a random resized crop of scale (0.5, 1) (the crop of SimCLR's fine-tuning recipe);
- ``s2``: ``s1`` then torchvision's RandAugment with 2 operations of magnitude 5 (of 31 bins);
- ``s3``: a wider crop jitter, scale (0.25, 1), then RandAugment 2 x magnitude 9;
- ``s4``: the wider crop jitter, then RandAugment 3 x magnitude 15.

The crop draws its parameters per image (kornia, batched). torchvision's RandAugment draws one
operation per call, so each chunk of :data:`RANDAUGMENT_CHUNK` images gets its own draw: a batch
sees many operations at the cost of one call per chunk rather than per image.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torchvision.transforms import v2

from selfsup.errors import ConfigError

RANDAUGMENT_CHUNK = 16
LEVELS = {
    "none": None,
    "s1": ((0.5, 1.0), None),
    "s2": ((0.5, 1.0), (2, 5)),
    "s3": ((0.25, 1.0), (2, 9)),
    "s4": ((0.25, 1.0), (3, 15)),
}


class StrengthAugment:
    """Augment a uint8 batch (N, 3, H, W) at one of :data:`LEVELS`; returns uint8 of the same shape."""

    def __init__(self, level: str, size: int) -> None:
        if level not in LEVELS:
            raise ConfigError(f"augment={level!r} is not a level; use one of {', '.join(LEVELS)}")
        spec = LEVELS[level]
        self.level = level
        self.crop = K.RandomResizedCrop((size, size), scale=spec[0], align_corners=False) if spec else None
        self.randaugment = v2.RandAugment(num_ops=spec[1][0], magnitude=spec[1][1]) if spec and spec[1] else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop is None:
            return images
        x = self.crop(images.float()).round().clamp_(0, 255).to(torch.uint8)
        if self.randaugment is not None:
            x = torch.cat([self.randaugment(chunk) for chunk in x.split(RANDAUGMENT_CHUNK)])
        return x
