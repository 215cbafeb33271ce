"""Label construction of the ELo temporal tasks (Piergiovanni et al. 2020, Sec. 3.1) on hand cases."""

from __future__ import annotations

import pytest
import torch

from selfsup.elo.tasks import (
    apply_order,
    apply_reverse,
    apply_shift,
    balanced_labels,
    order_task,
    predict_split,
    reverse_task,
    shift_task,
)
from selfsup.errors import ConfigError


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_labels_are_balanced_binary() -> None:
    labels = balanced_labels(7, _g())
    assert sorted(labels.tolist()) == [0.0] * 3 + [1.0] * 4
    assert sorted(reverse_task(6, _g()).tolist()) == [0.0] * 3 + [1.0] * 3


def test_order_task_keeps_label_one_in_order_and_really_shuffles_label_zero() -> None:
    for t in (2, 3, 5):
        perms, labels = order_task(16, t, _g(t))
        for perm, label in zip(perms, labels, strict=True):
            assert sorted(perm.tolist()) == list(range(t))
            assert torch.equal(perm, torch.arange(t)) == (label == 1)
    perms, labels = order_task(4, 2, _g())
    assert all(p.tolist() == [1, 0] for p, lab in zip(perms, labels, strict=True) if lab == 0)
    with pytest.raises(ValueError, match="at least 2"):
        order_task(4, 1, _g())


def test_a_generator_seed_fixes_the_labels() -> None:
    a, b = order_task(16, 8, _g(3)), order_task(16, 8, _g(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], order_task(16, 8, _g(4))[0])


def test_apply_order_moves_whole_frames_by_hand() -> None:
    # one clip, one channel, 3 frames of 2 steps each: [0 1 | 2 3 | 4 5]; new frame j = old frame perm[j]
    x = torch.arange(6.0).view(1, 1, 6)
    assert apply_order(x, torch.tensor([[2, 0, 1]]), chunk=2).flatten().tolist() == [4, 5, 0, 1, 2, 3]
    # two video clips (B, C, T, H, W) = (2, 1, 3, 1, 1): the first kept, the second reversed
    v = torch.arange(3.0).view(1, 1, 3, 1, 1).repeat(2, 1, 1, 1, 1)
    out = apply_order(v, torch.tensor([[0, 1, 2], [2, 1, 0]]))
    assert out.flatten(1).tolist() == [[0, 1, 2], [2, 1, 0]]


def test_apply_reverse_flips_time_and_negates_flow_only_where_label_is_zero() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]])          # (B, C, T) = (2, 1, 3)
    labels = torch.tensor([1.0, 0.0])
    assert apply_reverse(x, labels).flatten(1).tolist() == [[1, 2, 3], [3, 2, 1]]
    assert apply_reverse(x, labels, negate=True).flatten(1).tolist() == [[1, 2, 3], [-3, -2, -1]]


def test_shift_task_and_apply_shift_by_hand() -> None:
    shifts, labels = shift_task(32, 4, _g())
    assert ((shifts == 0) == (labels == 1)).all()
    assert shifts[labels == 0].min() >= 1 and shifts[labels == 0].max() <= 3
    # steps a, b, c shifted by 1 -> c, a, b; by 0 -> unchanged
    steps = torch.tensor([[[1.0], [2.0], [3.0]], [[1.0], [2.0], [3.0]]])
    assert apply_shift(steps, torch.tensor([1, 0])).flatten(1).tolist() == [[3, 1, 2], [1, 2, 3]]
    with pytest.raises(ValueError, match="at least 2"):
        shift_task(4, 1, _g())


def test_predict_split() -> None:
    assert predict_split(16, 4) == (12, 4)
    assert predict_split(2, 1) == (1, 1)
    for bad in (0, 16, 20):
        with pytest.raises(ConfigError, match="elo.predict_frames"):
            predict_split(16, bad)
