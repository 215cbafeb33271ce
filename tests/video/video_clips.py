"""Media the video tests write themselves: a smooth texture drifting at a known speed and a pure
tone (encoded with ffmpeg), plus damaged files, so decoded frames, flow and spectrograms have known
answers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from selfsup.data.media import encode_clip

SHIFT = 2  # pixels per frame the texture moves to the right


def drifting_texture(n_frames: int, size: int, dx: int = SHIFT, dy: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 (n_frames, size, size, 3): a smooth random texture moving (dx, dy) pixels per frame."""
    margin = max(abs(dx), abs(dy)) * n_frames + 8
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (size + 2 * margin, size + 2 * margin, 3)).astype(np.float32),
                           (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min()) * 255.0
    frames = [big[margin - dy * t:margin - dy * t + size, margin - dx * t:margin - dx * t + size]
              for t in range(n_frames)]
    return np.stack(frames).astype(np.uint8)


def tone(freq: float, seconds: float, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1.0 / sample_rate)[spectrum.argmax()])


def texture_clip(path: Path, n_frames: int = 8, size: int = 32, freq: float | None = 1000.0, seed: int = 0) -> Path:
    """An MP4 (8 fps) of a texture moving right by SHIFT px/frame, with a tone of ``freq`` Hz (or silent)."""
    audio = None if freq is None else tone(freq, n_frames / 8)
    encode_clip(path, drifting_texture(n_frames, size, seed=seed), audio, fps=8, sample_rate=16000)
    return path


def truncate(src: Path, dst: Path) -> Path:
    """``dst``: the first half of ``src``'s bytes."""
    data = src.read_bytes()
    dst.write_bytes(data[:len(data) // 2])
    return dst


def zero_middle(src: Path, dst: Path) -> Path:
    """``dst``: ``src`` with the middle third of its bytes zeroed (the index survives; ffmpeg logs
    decoder errors for the damaged packets but exits with status 0)."""
    data = bytearray(src.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = bytes(third)
    dst.write_bytes(bytes(data))
    return dst


def garbage(dst: Path) -> Path:
    dst.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return dst
