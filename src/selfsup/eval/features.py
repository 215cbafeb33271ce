"""Frozen-backbone feature extraction for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from selfsup.augment.views import EvalTransform
from selfsup.data.store import images_tensor


@torch.no_grad()
def extract_features(backbone: nn.Module, images: np.ndarray, transform: EvalTransform,
                     device: torch.device, batch_size: int = 512, desc: str = "features") -> torch.Tensor:
    """Backbone features (N, D) of uint8 images (N, H, W, 3), in eval mode, as float32 on CPU."""
    backbone.eval().to(device)
    transform = transform.to(device)
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False):
        x = images_tensor(images[start : start + batch_size]).to(device, non_blocking=True)
        out.append(backbone(transform(x)).float().cpu())
    return torch.cat(out)
