"""ffmpeg encoding and decoding on clips written here: sizes, frame sampling, audio, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from video_clips import dominant_frequency, garbage, texture_clip, tone, truncate, zero_middle

from selfsup.config.video import SyntheticActionsConfig
from selfsup.data.media import decode_audio, decode_frames, decoder_errors, encode_clip, even_indices, last_ffmpeg_line
from selfsup.data.synthetic_actions import write_synthetic_actions
from selfsup.errors import DataError


def grey_ramp(n_frames: int, height: int, width: int) -> np.ndarray:
    """Frame t is flat grey at level 10 + 20 t, so the decoded level tells which frame was picked."""
    levels = 10 + 20 * np.arange(n_frames)
    return np.broadcast_to(levels[:, None, None, None], (n_frames, height, width, 3)).astype(np.uint8)


def test_round_trip_keeps_frame_count_size_and_audio(tmp_path: Path) -> None:
    path = tmp_path / "clips" / "ramp.mp4"
    encode_clip(path, grey_ramp(12, 24, 32), tone(1000.0, 1.5), fps=8, sample_rate=16000)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ramp.mp4"]  # no temporary file left

    every = decode_frames(path, None, 16)
    assert every.shape == (12, 16, 16, 3) and every.dtype == np.uint8
    np.testing.assert_allclose(every[:, 8, 8].mean(1), 10 + 20 * np.arange(12), atol=3)

    four = decode_frames(path, 4, 16)
    assert four.shape == (4, 16, 16, 3)
    assert even_indices(12, 4).tolist() == [0, 4, 7, 11]
    np.testing.assert_allclose(four[:, 8, 8].mean(1), 10 + 20 * np.array([0, 4, 7, 11]), atol=3)
    assert decode_frames(path, 20, 16).shape == (20, 16, 16, 3)  # longer than the clip: frames repeat

    audio = decode_audio(path, 16000)
    assert audio.dtype == np.float32 and abs(len(audio) - 24000) <= 240
    assert dominant_frequency(audio, 16000) == pytest.approx(1000.0, abs=10)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.05)
    resampled = decode_audio(path, 8000)
    assert abs(len(resampled) - 12000) <= 120
    assert dominant_frequency(resampled, 8000) == pytest.approx(1000.0, abs=10)


def test_odd_frame_sides_are_padded_and_a_clip_without_audio_gives_an_empty_waveform(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    encode_clip(path, grey_ramp(5, 15, 17), None, fps=5)
    assert decode_frames(path, None, 16).shape == (5, 16, 16, 3)
    audio = decode_audio(path, 16000)
    assert audio.shape == (0,) and audio.dtype == np.float32


def test_damaged_files_raise_a_data_error_naming_the_file_and_ffmpeg_s_reason(tmp_path: Path) -> None:
    good = texture_clip(tmp_path / "good.mp4")
    cut = truncate(good, tmp_path / "cut.mp4")
    junk = garbage(tmp_path / "junk.mp4")
    with pytest.raises(DataError, match=r"cut\.mp4: .*partial file"):
        decode_frames(cut, 4, 16)
    with pytest.raises(DataError, match=r"cut\.mp4"):
        decode_audio(cut, 16000)
    for decode in (lambda p: decode_frames(p, 4, 16), lambda p: decode_audio(p, 16000)):
        with pytest.raises(DataError, match=r"junk\.mp4: (moov atom not found|.*Invalid data)"):
            decode(junk)
        with pytest.raises(DataError, match=r"absent\.mp4: no such file"):
            decode(tmp_path / "absent.mp4")
    head = tmp_path / "head.mp4"
    head.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=r"head\.mp4: "):
        decode_frames(head, 4, 16)


def test_a_clip_with_zeroed_bytes_is_corrupt_though_ffmpeg_exits_0(tmp_path: Path) -> None:
    good = texture_clip(tmp_path / "good.mp4")
    zeroed = zero_middle(good, tmp_path / "zeroed.mp4")
    # ffmpeg conceals the damage and exits 0: its decoder errors on stderr are what flag the clip
    for decode in (lambda p: decode_frames(p, 4, 16), lambda p: decode_audio(p, 16000)):
        with pytest.raises(DataError, match=r"zeroed\.mp4: (Invalid|channel element|.*error)") as info:
            decode(zeroed)
        assert "@ 0x" not in str(info.value)  # the first error line, without ffmpeg's [decoder @ address] prefix


def test_healthy_clips_yield_no_decoder_errors(tmp_path: Path) -> None:
    """Healthy clips, including synthetic-actions clips at the default size, are never flagged."""
    spec = SyntheticActionsConfig(clips_per_class=4)
    plans = write_synthetic_actions(0, spec, tmp_path / "synthetic", workers=2)
    clips = [tmp_path / "synthetic" / plan.path for plan in plans]
    clips += [texture_clip(tmp_path / "tone.mp4"), texture_clip(tmp_path / "silent.mp4", freq=None)]
    for clip in clips:
        assert decode_frames(clip, None, 64).shape[0] >= 8
        decode_audio(clip, 16000)


def test_decoder_errors_are_the_error_lines_without_prefixes() -> None:
    stderr = (b"[h264 @ 0x55f2] Invalid NAL unit size (0 > 15).\n"
              b"    Last message repeated 2 times\n"
              b"[vist#0:0/h264 @ 0x55f3] [dec:h264 @ 0x55f4] Decoding error: Invalid data found when processing input\n"
              b"\n")
    assert decoder_errors(stderr) == ["Invalid NAL unit size (0 > 15).",
                                      "Decoding error: Invalid data found when processing input"]
    assert decoder_errors(b"") == [] and decoder_errors("\n") == []


def test_bad_frames_are_refused_before_ffmpeg_runs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="uint8 \\(T, H, W, 3\\)"):
        encode_clip(tmp_path / "x.mp4", np.zeros((4, 8, 8), np.uint8), None, fps=8)
    assert not list(tmp_path.iterdir())


def test_last_ffmpeg_line_prefers_the_specific_cause_over_generic_wrappers() -> None:
    stderr = (b"[in#0 @ 0x55d] moov atom not found\n"
              b"[in#0 @ 0x55e] Error opening input: Invalid data found when processing input\n"
              b"Error opening input file trunc.mp4.\n"
              b"Error opening input files: Invalid data found when processing input\n")
    assert last_ffmpeg_line(stderr) == "moov atom not found"
    assert last_ffmpeg_line(b"Error opening input files: No such file or directory\n\n") == \
        "Error opening input files: No such file or directory"
    assert last_ffmpeg_line(b"") == "no message"
