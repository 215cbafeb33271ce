"""Log-mel spectrograms of mono waveforms, with ``torch.stft`` and a mel filter bank built here.

The filter bank uses the HTK mel scale, ``mel(f) = 2595 log10(1 + f / 700)`` (Young et al., The
HTK Book), with ``n_mels`` triangular filters whose centres are equally spaced in mel between
``f_min`` and ``f_max`` (default the Nyquist frequency). Each triangle rises from the previous
centre to 1 at its own centre and falls to 0 at the next; there is no area normalisation (the
HTK convention). The spectrogram is the power ``|STFT|^2`` (Hann window of ``n_fft`` samples,
``hop_length`` hop, centred frames), projected onto the filters, and the log is
``log(mel + LOG_OFFSET)``, so silence gives ``log(LOG_OFFSET)`` rather than minus infinity.

Every clip's waveform is zero-padded or cropped to one length before the transform, so the
spectrograms of a dataset stack into one array.
"""

from __future__ import annotations

import numpy as np
import torch

LOG_OFFSET = 1e-6
MEL_SCALE = "htk"


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_points(n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """The ``n_mels + 2`` filter edges in Hz: the lower edge, the ``n_mels`` centres, the upper edge."""
    f_max = sample_rate / 2.0 if f_max is None else f_max
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))


def mel_centres(n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """Centre frequency in Hz of each mel filter."""
    return mel_points(n_mels, sample_rate, f_min, f_max)[1:-1]


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """float32 (n_mels, n_fft // 2 + 1): triangular HTK-mel filters over the rfft bins."""
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_points(n_mels, sample_rate, f_min, f_max)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32))


def fit_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """``waveform`` cropped to its first ``n_samples`` or zero-padded at the end to that length."""
    out = np.zeros(n_samples, dtype=np.float32)
    n = min(n_samples, len(waveform))
    out[:n] = waveform[:n]
    return out


def n_steps(n_samples: int, hop_length: int) -> int:
    """Spectrogram frames of a centred STFT over ``n_samples``."""
    return 1 + n_samples // hop_length


def log_mel(waveform: np.ndarray | torch.Tensor, sample_rate: int, n_fft: int = 512, hop_length: int = 160,
            n_mels: int = 40, n_samples: int | None = None, filterbank: torch.Tensor | None = None) -> np.ndarray:
    """float32 (n_mels, n_steps) log-mel spectrogram of a mono waveform.

    ``n_samples`` pads or crops the waveform first (default: its own length), giving
    ``n_steps = 1 + n_samples // hop_length``. ``filterbank`` (from :func:`mel_filterbank`) may be
    passed to reuse it over many clips.
    """
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    wave = fit_length(wave, len(wave) if n_samples is None else n_samples)
    fb = mel_filterbank(n_fft, n_mels, sample_rate) if filterbank is None else filterbank
    spec = torch.stft(torch.from_numpy(wave), n_fft=n_fft, hop_length=hop_length,
                      window=torch.hann_window(n_fft), center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (n_fft // 2 + 1, n_steps)
    return torch.log(fb @ power + LOG_OFFSET).numpy().astype(np.float32)
