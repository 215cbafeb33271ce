"""The few-label losses against small cases computed by hand from the papers' equations."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.fewlabel.losses import (
    distillation_loss,
    distillation_with_labels,
    normalised_selftraining_loss,
    pseudo_labels,
)


def test_distillation_loss_is_eq2_at_the_temperature() -> None:
    # tau = 2: teacher [2, 0] / 2 -> softmax [e/(1+e), 1/(1+e)] = [0.731059, 0.268941];
    # student [0, 2] / 2 -> log-softmax [-log(1+e), 1-log(1+e)] = [-1.313262, -0.313262];
    # L = 0.731059 * 1.313262 + 0.268941 * 0.313262 = 1.044320.
    student = torch.tensor([[0.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(1.044320, abs=1e-6)
    # tau = 1 on the same logits: teacher [0.880797, 0.119203], student log-softmax [-2.126928, -0.126928].
    assert distillation_loss(student, teacher, 1.0).item() == pytest.approx(
        0.880797 * 2.126928 + 0.119203 * 0.126928, abs=1e-5)


def test_distillation_sends_no_gradient_to_the_teacher_and_the_student_gets_softmax_minus_target() -> None:
    student = torch.tensor([[0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    distillation_loss(student, teacher, 2.0).backward()
    assert teacher.grad is None
    # d/ds of mean_b CE(softmax(t/tau), softmax(s/tau)) = (softmax(s/tau) - softmax(t/tau)) / (tau * B).
    # Row 0: softmax([0, 1]) = [0.268941, 0.731059], target [0.731059, 0.268941] -> [-0.462117, 0.462117] / 4.
    # Row 1: equal logits and an even teacher: zero.
    expected = torch.tensor([[-0.462117, 0.462117], [0.0, 0.0]]) / 4
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_eq3_weights_labels_by_one_minus_alpha_on_the_labeled_rows_only() -> None:
    student = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([1, -1])  # the second row's label is hidden
    # CE of row 0 on class 1 at tau 1: log(1 + e^-2) = 0.126928.
    ce = math.log(1 + math.exp(-2))
    distill = distillation_loss(student, teacher, 1.0).item()
    got = distillation_with_labels(student, teacher, labels, 1.0, 0.25).item()
    assert got == pytest.approx(0.75 * ce + 0.25 * distill, abs=1e-6)
    assert distillation_with_labels(student, teacher, labels, 1.0, 1.0).item() == pytest.approx(distill)
    # No labeled row: only the distillation term.
    none = torch.tensor([-1, -1])
    assert distillation_with_labels(student, teacher, none, 1.0, 0.25).item() == pytest.approx(0.25 * distill)


def test_pseudo_labels_hard_soft_and_threshold() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.1]])  # top probabilities 0.880797 and 0.524979
    hard, keep = pseudo_labels(logits, "hard", 0.6)
    assert hard.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert keep.tolist() == [True, False]
    soft, keep = pseudo_labels(logits, "soft", 0.0)
    assert soft[0].tolist() == pytest.approx([0.880797, 0.119203], abs=1e-6)
    assert soft[1].tolist() == pytest.approx([0.475021, 0.524979], abs=1e-6)
    assert keep.tolist() == [True, True]
    _, keep = pseudo_labels(logits, "soft", 1.0)
    assert keep.tolist() == [False, False]
    with pytest.raises(ConfigError, match="threshold"):
        pseudo_labels(logits, "hard", 1.5)
    with pytest.raises(ConfigError, match="pseudo"):
        pseudo_labels(logits, "argmax")


def test_normalised_selftraining_loss_rescales_the_pseudo_term_by_the_running_means() -> None:
    human = torch.tensor(2.0, requires_grad=True)
    pseudo = torch.tensor(0.5, requires_grad=True)
    # (L_h + alpha * mean_h / mean_p * L_p) / (1 + alpha) = (2 + 1 * (1.0 / 0.25) * 0.5) / 2 = 2.0
    loss = normalised_selftraining_loss(human, pseudo, 1.0, 0.25, 1.0)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert human.grad.item() == pytest.approx(0.5)   # 1 / (1 + alpha)
    assert pseudo.grad.item() == pytest.approx(2.0)  # alpha * 4 / (1 + alpha)
    # alpha = 3: (2 + 3 * 4 * 0.5) / 4 = 2.0; no pseudo mean yet: the human term alone, / (1 + alpha).
    assert normalised_selftraining_loss(torch.tensor(2.0), torch.tensor(0.5), 1.0, 0.25, 3.0).item() == 2.0
    assert normalised_selftraining_loss(torch.tensor(2.0), torch.tensor(0.5), 1.0, 0.0, 1.0).item() == 1.0
