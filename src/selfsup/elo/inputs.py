"""Network inputs of the ELo modalities (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1).

Every modality is laid out with time on dim 2, so the temporal tasks treat them alike:

- RGB: uint8 frames (N, T, H, W, 3) -> float (N, 3, T, s, s) in [-1, 1], resized (antialiased) to
  s = ``elo.input_size``; the grayscale modality is their luminance (N, 1, T, s, s).
- flow: pixels/frame (N, T-1, H, W, 2) -> (N, 2, T-1, s, s) in pixels/frame of the resized frames
  (u scaled by s/W, v by s/H).
- audio: log-mel (N, n_mels, n_steps) -> (N, 1, A*T, n_mels), time first and resampled (area) to
  A = ``AUDIO_STEPS_PER_FRAME`` steps per video frame, so a video frame is a whole audio chunk.

Flow and audio are further standardised by their training set's statistics in
:func:`selfsup.elo.train.train_elo`; RGB is not, so a trained RGB network needs nothing but
:func:`prepare_frames` (see :func:`selfsup.elo.features.rgb_features`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

AUDIO_STEPS_PER_FRAME = 4
_CHUNK = 64  # clips converted at a time, to bound the float copies of the uint8 arrays
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(M, C, H, W) -> (M, C, size, size), antialiased bilinear (area-like when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def prepare_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 RGB frames (N, T, H, W, 3) -> float32 (N, 3, T, size, size) in [-1, 1]."""
    # np.array copies: memory-mapped frames are read-only, which torch warns about
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.array(frames))
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"frames of shape {tuple(x.shape)}: expected (N, T, H, W, 3)")
    n, t = x.shape[:2]
    out = []
    for start in range(0, n, _CHUNK):
        part = x[start : start + _CHUNK]
        m = len(part)
        flat = part.permute(0, 1, 4, 2, 3).reshape(m * t, 3, *part.shape[2:4]).float() / 255.0
        flat = _resize(flat, size).clamp(0.0, 1.0) * 2.0 - 1.0
        out.append(flat.reshape(m, t, 3, size, size).transpose(1, 2))
    return torch.cat(out).contiguous()


def prepare_flow(flow: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Optical flow (N, T-1, H, W, 2) in pixels/frame -> float32 (N, 2, T-1, size, size) in pixels/frame
    of frames resized to size x size."""
    x = torch.as_tensor(np.asarray(flow, dtype=np.float32))
    if x.ndim != 5 or x.shape[-1] != 2:
        raise ValueError(f"flow of shape {tuple(x.shape)}: expected (N, T-1, H, W, 2)")
    n, t, h, w = x.shape[:4]
    gain = torch.tensor([size / w, size / h]).view(1, 2, 1, 1)
    out = []
    for start in range(0, n, _CHUNK):
        part = x[start : start + _CHUNK]
        m = len(part)
        flat = _resize(part.permute(0, 1, 4, 2, 3).reshape(m * t, 2, h, w), size) * gain
        out.append(flat.reshape(m, t, 2, size, size).transpose(1, 2))
    return torch.cat(out).contiguous()


def prepare_logmel(logmel: np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """Log-mel spectrograms (N, n_mels, n_steps) -> float32 (N, 1, A * frames, n_mels), time resampled
    by averaging to ``AUDIO_STEPS_PER_FRAME`` (A) steps per video frame."""
    x = torch.as_tensor(np.asarray(logmel, dtype=np.float32))
    if x.ndim != 3:
        raise ValueError(f"log-mel of shape {tuple(x.shape)}: expected (N, n_mels, n_steps)")
    x = F.adaptive_avg_pool1d(x, AUDIO_STEPS_PER_FRAME * frames)
    return x.transpose(1, 2).unsqueeze(1).contiguous()


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """The luminance (B, 1, T, H, W) of RGB clips (B, 3, T, H, W), in the same [-1, 1] range."""
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1, 1)
    return (rgb * weights).sum(1, keepdim=True)
