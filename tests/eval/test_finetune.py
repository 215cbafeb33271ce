"""Label-fraction fine-tuning (SimCLR Sec. 4.2 / Appendix B.5): the subset and the training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.augment.views import EvalTransform
from selfsup.errors import ConfigError, DataError
from selfsup.eval.finetune import finetune_accuracy
from selfsup.fewlabel.subsets import balanced_subset
from selfsup.models.backbones import SmallCNN

CPU = torch.device("cpu")
# four pure colours, one per class: red, green, blue, yellow
COLOURS = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220], [220, 220, 30]], dtype=np.int64)


def _colour_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 images filled with the class colour plus noise; classes cycle so all four are present."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    noise = rng.integers(-30, 31, (n, 16, 16, 3))
    images = np.clip(COLOURS[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _setup() -> tuple[nn.Module, EvalTransform, tuple, tuple]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return (SmallCNN(width=4), EvalTransform(16, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
            _colour_data(64, 0), _colour_data(40, 1))


ARGS = dict(n_classes=4, epochs=15, lr=0.05, weight_decay=0.0, batch_size=16, device=CPU)


def test_finetune_learns_colours_and_leaves_the_extractor_alone() -> None:
    net, transform, (xtr, ytr), (xte, yte) = _setup()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    rng_state = torch.get_rng_state()
    acc = finetune_accuracy(net, xtr, ytr, xte, yte, transform=transform, label_fraction=1.0, seed=0, **ARGS)
    assert acc > 0.9
    # the caller's weights, BatchNorm running statistics, mode and grad flags are unchanged
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng_state)
    # deterministic for a given seed
    again = finetune_accuracy(net, xtr, ytr, xte, yte, transform=transform, label_fraction=1.0, seed=0, **ARGS)
    assert again == acc


def test_finetune_trains_on_exactly_the_balanced_subset() -> None:
    net, transform, (xtr, ytr), (xte, yte) = _setup()
    # images outside balanced_subset(ytr, 0.25, seed=0) get the colour of the NEXT class, so only that
    # subset is labelled correctly: 16 of 64 images (4 per class)
    keep = balanced_subset(ytr, 0.25, 0)
    assert np.bincount(ytr[keep]).tolist() == [4, 4, 4, 4]
    wrong = np.setdiff1d(np.arange(64), keep)
    xtr = xtr.copy()
    xtr[wrong] = _colour_data(64, 2)[0][(np.arange(64) + 1)[wrong] % 64]  # index i+1 has class (i+1) % 4
    assert not np.array_equal(xtr[wrong[0]], _colour_data(64, 0)[0][wrong[0]])
    args = {**ARGS, "epochs": 40}
    subset_acc = finetune_accuracy(net, xtr, ytr, xte, yte, transform=transform, label_fraction=0.25, seed=0,
                                   **args)
    assert subset_acc > 0.9
    # label_fraction 1.0 uses all 64: the 48 shifted images outvote the 16 right ones
    all_acc = finetune_accuracy(net, xtr, ytr, xte, yte, transform=transform, label_fraction=1.0, seed=0, **args)
    assert all_acc < 0.5


def test_finetune_rejects_bad_fraction_and_labels() -> None:
    net, transform, (xtr, ytr), (xte, yte) = _setup()
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="label fraction"):
            finetune_accuracy(net, xtr, ytr, xte, yte, transform=transform, label_fraction=bad, seed=0, **ARGS)
    with pytest.raises(DataError, match="labels"):
        finetune_accuracy(net, xtr, ytr + 1, xte, yte, transform=transform, label_fraction=1.0, seed=0, **ARGS)
