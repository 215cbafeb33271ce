"""Clip embeddings of a trained ELo RGB network, for evaluation and the Zipf-KL fitness.

Piergiovanni et al. 2020 (arXiv:2002.12177) keep only the RGB network after training; its clip
representation (the mean over time of the per-step features, ``elo.embed_dim`` wide) is what the
linear probe, kNN and Zipf-KL (Sec. 3.3) see.
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.elo.inputs import prepare_frames
from selfsup.elo.networks import VideoEncoder


@torch.no_grad()
def rgb_features(encoder: VideoEncoder, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Clip embeddings (N, D) float32 of uint8 RGB clips (N, T, H, W, 3), in eval mode, on CPU.

    Frames are resized to the encoder's ``input_size`` and scaled to [-1, 1] as in training
    (:func:`selfsup.elo.inputs.prepare_frames`), ``batch_size`` clips at a time.
    """
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(frames), batch_size):
        x = prepare_frames(frames[start : start + batch_size], encoder.input_size).to(device)
        out.append(encoder(x).embedding.float().cpu())
    return torch.cat(out).numpy()
