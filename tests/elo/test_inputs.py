"""Arrays to ELo network inputs, and the class-preserving augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.elo.augment import jitter, random_crop
from selfsup.elo.inputs import AUDIO_STEPS_PER_FRAME, grayscale, prepare_flow, prepare_frames, prepare_logmel


def test_frames_become_channels_first_in_minus_one_to_one() -> None:
    frames = np.zeros((1, 2, 4, 4, 3), np.uint8)
    frames[..., 0] = 255
    frames[..., 2] = 51                                  # 51 / 255 = 0.2 -> 2 * 0.2 - 1 = -0.6
    x = prepare_frames(frames, 4)
    assert x.shape == (1, 3, 2, 4, 4) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, :, 0, 0].T, torch.tensor([[1.0, -1.0, -0.6]] * 2))
    # a constant frame stays constant when resized
    small = prepare_frames(np.full((2, 3, 16, 16, 3), 51, np.uint8), 8)
    assert small.shape == (2, 3, 3, 8, 8) and torch.allclose(small, torch.full_like(small, -0.6), atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        prepare_frames(np.zeros((2, 4, 4, 3), np.uint8), 4)


def test_flow_is_in_pixels_of_the_resized_frames() -> None:
    # 16 rows x 8 columns to 4 x 4: u (x) scales by 4/8, v (y) by 4/16
    flow = np.zeros((1, 3, 16, 8, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -4.0
    x = prepare_flow(flow, 4)
    assert x.shape == (1, 2, 3, 4, 4)
    assert torch.allclose(x[:, 0], torch.ones(1, 3, 4, 4)) and torch.allclose(x[:, 1], -torch.ones(1, 3, 4, 4))


def test_logmel_is_time_first_with_a_whole_number_of_steps_per_frame() -> None:
    assert AUDIO_STEPS_PER_FRAME == 4
    logmel = np.tile(np.arange(8, dtype=np.float32), (1, 3, 1))       # (1 clip, 3 mels, 8 steps), value = step
    x = prepare_logmel(logmel, frames=1)                              # 4 steps: the means of step pairs
    assert x.shape == (1, 1, 4, 3)
    assert torch.allclose(x[0, 0, :, 1], torch.tensor([0.5, 2.5, 4.5, 6.5]))


def test_grayscale_keeps_the_range() -> None:
    rgb = torch.stack([torch.ones(1, 2, 2, 2), -torch.ones(1, 2, 2, 2)]).expand(2, 3, 2, 2, 2)
    gray = grayscale(rgb)
    assert gray.shape == (2, 1, 2, 2, 2)
    assert torch.allclose(gray[0], torch.ones(1, 2, 2, 2)) and torch.allclose(gray[1], -torch.ones(1, 2, 2, 2))


def test_no_crop_and_no_jitter_are_identities_that_draw_nothing() -> None:
    g = torch.Generator().manual_seed(0)
    rgb, flow = torch.rand(2, 3, 4, 8, 8), torch.rand(2, 2, 3, 8, 8)
    out_rgb, out_flow = random_crop(rgb, flow, 1.0, g)
    assert out_rgb is rgb and out_flow is flow
    assert jitter(rgb, 0.0, g) is rgb
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())


def test_crop_magnifies_the_flow_and_keeps_constant_clips_constant() -> None:
    g = torch.Generator().manual_seed(1)
    rgb = torch.full((4, 3, 2, 8, 8), 0.25)
    flow = torch.ones(4, 2, 1, 8, 8)
    out_rgb, out_flow = random_crop(rgb, flow, 0.5, g)
    assert torch.allclose(out_rgb, rgb)
    # a crop of side f in [0.5, 1] resized back multiplies displacements by 1/f in [1, 2], one f per clip
    per_clip = out_flow.flatten(1)
    assert torch.allclose(per_clip, per_clip[:, :1].expand_as(per_clip))
    assert (per_clip >= 1.0 - 1e-6).all() and (per_clip <= 2.0 + 1e-6).all() and per_clip.std() > 0


def test_jitter_is_one_affine_change_per_clip_within_range() -> None:
    g = torch.Generator().manual_seed(2)
    frame = torch.rand(1, 3, 1, 4, 4) * 2 - 1
    clips = frame.expand(3, 3, 5, 4, 4)                 # 3 equal clips of 5 equal frames
    out = jitter(clips, 0.3, g)
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out, out[:, :, :1].expand_as(out))   # the same change for every frame of a clip
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], clips[0])  # drawn per clip
