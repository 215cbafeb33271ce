"""Linear probe on frozen features: a linear classifier trained with cross-entropy.

Features are standardised with the train split's mean and std (a BatchNorm without affine
parameters in front of the classifier, as in MAE's linear probing), then a linear layer is trained
with AdamW and a cosine schedule on mini-batches. Deterministic for a given seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.config.image import LinearProbeConfig
from selfsup.schedules import warmup_cosine


def train_linear_probe(train: torch.Tensor, train_labels: torch.Tensor, n_classes: int,
                       cfg: LinearProbeConfig, seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """Fit the probe; returns (linear layer, feature mean, feature std)."""
    g = torch.Generator().manual_seed(seed)
    mean, std = train.mean(0), train.std(0) + 1e-6
    x = (train - mean) / std
    layer = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.01)
        layer.bias.zero_()
    opt = torch.optim.AdamW(layer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, (len(x) + cfg.batch_size - 1) // cfg.batch_size)
    lrs = warmup_cosine(cfg.lr, cfg.epochs * steps_per_epoch)
    step = 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = float(lrs[step])
            loss = F.cross_entropy(layer(x[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return layer, mean, std


@torch.no_grad()
def linear_probe_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                          test_labels: torch.Tensor, n_classes: int, cfg: LinearProbeConfig,
                          seed: int = 0) -> float:
    with torch.enable_grad():
        layer, mean, std = train_linear_probe(train, train_labels, n_classes, cfg, seed)
    pred = layer((test - mean) / std).argmax(1)
    return (pred == test_labels).float().mean().item()
