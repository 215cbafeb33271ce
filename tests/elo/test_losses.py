"""ELo task losses (Piergiovanni et al. 2020, Sec. 3.1, Eq. 1) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.elo.losses import binary_task_loss, distill_loss, info_nce, reconstruction_loss


def test_reconstruction_loss_is_the_mean_squared_error() -> None:
    # (1^2 + 2^2 + 0 + 1^2) / 4 = 1.5
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    assert reconstruction_loss(pred, torch.zeros(2, 2)).item() == pytest.approx(1.5)


def test_binary_task_loss_by_hand() -> None:
    # label 1, logit 0: -log sigmoid(0) = log 2 = 0.693147
    # label 0, logit 2: -log(1 - sigmoid(2)) = log(1 + e^2) = 2.126928; mean 1.410038
    expected = (math.log(2) + math.log1p(math.exp(2))) / 2
    assert expected == pytest.approx(1.410038, abs=1e-6)
    assert binary_task_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(expected)


def test_info_nce_2x2_by_hand() -> None:
    # tau = 1. Anchors (1,0), (0,1); candidates (1,0), (0.6,0.8). Similarities [[1, 0.6], [0, 0.8]].
    # Row 1: -log(e^1 / (e^1 + e^0.6)) = log(1 + e^-0.4) = 0.513015
    # Row 2: -log(e^0.8 / (e^0 + e^0.8)) = log(1 + e^-0.8) = 0.371101; mean 0.442058
    expected = (math.log1p(math.exp(-0.4)) + math.log1p(math.exp(-0.8))) / 2
    assert expected == pytest.approx(0.442058, abs=1e-6)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    assert info_nce(a, c, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # embeddings are l2-normalised first: lengths do not matter
    assert info_nce(3 * a, 5 * c, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # tau = 0.5 doubles the similarities: log(1 + e^-0.8) and log(1 + e^-1.6)
    half = (math.log1p(math.exp(-0.8)) + math.log1p(math.exp(-1.6))) / 2
    assert info_nce(a, c, temperature=0.5).item() == pytest.approx(half, rel=1e-6)


def test_info_nce_3x3_matches_a_loop_over_the_definition() -> None:
    g = torch.Generator().manual_seed(0)
    a, c = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    total = 0.0
    for i in range(3):
        sims = [float(a[i] @ c[j] / (a[i].norm() * c[j].norm())) / 0.1 for j in range(3)]
        total += -math.log(math.exp(sims[i]) / sum(math.exp(s) for s in sims))
    assert info_nce(a, c, temperature=0.1).item() == pytest.approx(total / 3, rel=1e-5)


def test_distill_loss_by_hand_weights_stages_and_skips_zero_weights() -> None:
    # stage 0 weight 0 (skipped, may be None); stage 1: mean((1 - 0)^2) = 1, weight 0.5;
    # stage 2: mean of (2, 0)^2 = 2, weight 2 -> 0.5 * 1 + 2 * 2 = 4.5
    student = [None, torch.ones(1, 1, 3), torch.tensor([[[2.0, 0.0]]])]
    teacher = [None, torch.zeros(1, 1, 3), torch.zeros(1, 1, 2)]
    assert distill_loss(student, teacher, (0.0, 0.5, 2.0)).item() == pytest.approx(4.5)
    with pytest.raises(ValueError, match="nothing to distill"):
        distill_loss(student, teacher, (0.0, 0.0, 0.0))


def test_distill_loss_does_not_train_the_teacher() -> None:
    s = torch.ones(2, 3, requires_grad=True)
    t = torch.zeros(2, 3, requires_grad=True)
    distill_loss([s], [t], (1.0,)).backward()
    assert t.grad is None
    # d/ds mean((s - t)^2) = 2 (s - t) / 6
    assert torch.allclose(s.grad, torch.full((2, 3), 2 / 6))
