"""Weighted k-nearest-neighbour classification on frozen features.

The protocol of Wu et al. 2018 (InstDisc, arXiv:1805.01978, Sec. 3.4) as used by DINO: cosine
similarity to the labeled train features, the top-k neighbours vote with weight exp(s / T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, n_classes: int,
                k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Predicted labels (M,) for ``test`` (M, D) from ``train`` (N, D) with labels (N,)."""
    train = F.normalize(train.float(), dim=1)
    k = min(k, len(train))
    preds = []
    for start in range(0, len(test), chunk):
        q = F.normalize(test[start : start + chunk].float(), dim=1)
        sim, idx = (q @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes, device=q.device)
        votes.scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                 test_labels: torch.Tensor, n_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    pred = knn_predict(train, train_labels, test, n_classes, k, temperature)
    return (pred == test_labels).float().mean().item()
