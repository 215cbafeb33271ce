"""The augmentation levels keep the batch's shape and dtype, and grow in how much they change an image."""

from __future__ import annotations

import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.fewlabel.augment import LEVELS, StrengthAugment


def test_levels_keep_uint8_batches_and_change_more_as_they_grow(one_thread) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    images[:, :, 4:12, 4:12] = 255  # a bright square: crops and RandAugment's geometric ops move it
    change = {}
    for level in LEVELS:
        out = StrengthAugment(level, 16)(images)
        assert out.shape == images.shape and out.dtype == torch.uint8
        change[level] = (out.float() - images.float()).abs().mean().item()
    assert change["none"] == 0.0
    assert 0.0 < change["s1"] < change["s4"]
    with pytest.raises(ConfigError, match="s5"):
        StrengthAugment("s5", 16)
