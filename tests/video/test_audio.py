"""The mel filter bank and log-mel spectrograms: shapes, fixed length, and where a pure tone lands."""

from __future__ import annotations

import numpy as np
import pytest
from video_clips import tone

from selfsup.prep.audio import LOG_OFFSET, hz_to_mel, log_mel, mel_centres, mel_filterbank, n_steps

SR, N_FFT, HOP, N_MELS = 16000, 512, 160, 40


def test_filterbank_triangles_peak_at_their_mel_spaced_centres() -> None:
    fb = mel_filterbank(N_FFT, N_MELS, SR).numpy()
    assert fb.shape == (N_MELS, N_FFT // 2 + 1) and fb.dtype == np.float32
    assert fb.min() >= 0 and fb.max() <= 1 and (fb.max(1) > 0).all()
    centres = mel_centres(N_MELS, SR)
    np.testing.assert_allclose(np.diff(hz_to_mel(centres)), np.diff(hz_to_mel(centres)).mean(), rtol=1e-9)
    bin_hz = SR / N_FFT
    np.testing.assert_allclose(fb.argmax(1) * bin_hz, centres, atol=bin_hz)
    # HTK mel: 1000 Hz is 1000 mel (2595 log10(1 + 1000/700) = 999.99)
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.05)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 5200.0])
def test_a_pure_tone_peaks_in_the_mel_band_containing_it(freq: float) -> None:
    spec = log_mel(tone(freq, 1.0), SR, N_FFT, HOP, N_MELS)
    assert spec.shape == (N_MELS, n_steps(SR, HOP)) and spec.dtype == np.float32
    # The triangles of neighbouring bands cross halfway (in Hz) between their centres, so the band
    # containing a frequency is the one with the nearest centre.
    expected = int(np.abs(mel_centres(N_MELS, SR) - freq).argmin())
    assert (spec[:, 5:-5].argmax(0) == expected).all()


def test_clips_are_padded_or_cropped_to_one_length() -> None:
    n = 32000
    short, exact, long = (tone(440.0, s / SR) for s in (20000, n, 40000))
    specs = [log_mel(w, SR, N_FFT, HOP, N_MELS, n_samples=n) for w in (short, exact, long)]
    assert {s.shape for s in specs} == {(N_MELS, 1 + n // HOP)}
    np.testing.assert_allclose(specs[2], specs[1], atol=1e-4)  # cropping keeps the start
    np.testing.assert_allclose(specs[0][:, -20:], np.log(LOG_OFFSET), atol=1e-3)  # padding is silence
    silent = log_mel(np.zeros(0, np.float32), SR, N_FFT, HOP, N_MELS, n_samples=n)
    np.testing.assert_allclose(silent, np.log(LOG_OFFSET), atol=1e-6)
