"""ELo modality encoders, decoders and temporal heads: shapes, and clips independent within a batch."""

from __future__ import annotations

import torch

from selfsup.elo.networks import AUDIO_STRIDES, VIDEO_STRIDES, AudioEncoder, Decoder, TemporalHead, VideoEncoder


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def test_video_encoder_stages_steps_and_embedding() -> None:
    enc = VideoEncoder(3, width=4, embed_dim=8, input_size=16)
    out = enc(_x(2, 3, 6, 16, 16))
    # stage 1 halves space; stages 2, 3 halve time and space (rounding up)
    assert [tuple(m.shape) for m in out.stages] == [(2, 4, 6, 8, 8), (2, 8, 3, 4, 4), (2, 16, 2, 2, 2)]
    assert out.steps.shape == (2, 2, 8)
    assert torch.allclose(out.embedding, out.steps.mean(1))
    assert enc.input_size == 16 and enc.widths == (4, 8, 16)


def test_audio_encoder_halves_time_and_frequency_per_stage() -> None:
    out = AudioEncoder(width=4, embed_dim=8)(_x(2, 1, 24, 8))
    assert [tuple(m.shape) for m in out.stages] == [(2, 4, 12, 4), (2, 8, 6, 2), (2, 16, 3, 1)]
    assert out.steps.shape == (2, 3, 8) and out.embedding.shape == (2, 8)


def test_decoders_reach_the_target_size_from_any_map() -> None:
    video = Decoder(VIDEO_STRIDES, 16, 4, 3)
    assert video(_x(2, 16, 2, 2, 2), (6, 16, 16)).shape == (2, 3, 6, 16, 16)
    assert video(_x(2, 16, 1, 1, 1), (2, 16, 16)).shape == (2, 3, 2, 16, 16)   # forecast from a past map
    assert video(_x(2, 16, 2, 2, 2), (5, 8, 8)).shape == (2, 3, 5, 8, 8)
    assert Decoder(AUDIO_STRIDES, 16, 4, 1)(_x(2, 16, 3, 1), (24, 8)).shape == (2, 1, 24, 8)


def test_temporal_head_takes_any_number_of_steps() -> None:
    head = TemporalHead(8, 6)
    assert head(_x(3, 5, 8)).shape == (3,)
    assert head(_x(3, 1, 8)).shape == (3,)


def test_group_norm_keeps_clips_independent_of_their_batch() -> None:
    torch.manual_seed(0)
    enc = VideoEncoder(2, width=4, embed_dim=8, input_size=8)
    x = _x(3, 2, 4, 8, 8)
    alone = enc(x[1:2])
    together = enc(x)
    assert torch.allclose(together.steps[1:2], alone.steps, rtol=1e-4, atol=1e-5)
    pairs = zip(together.stages, alone.stages, strict=True)
    assert all(torch.allclose(t[1:2], a, rtol=1e-4, atol=1e-5) for t, a in pairs)
