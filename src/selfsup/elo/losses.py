"""The ELo task losses (Piergiovanni et al. 2020, arXiv:2002.12177, Sec. 3.1 and Eq. 1).

ELo trains every modality network m on a weighted sum of self-supervised tasks t and distills
the other networks into the RGB one:

    L = sum_m sum_t lambda_{m,t} L_{m,t} + sum_d lambda_d L_d,   L_d(L_i, M_i) = ||L_i - M_i||_2,

where L_i is a layer of another modality's network and M_i the matching layer of the main (RGB)
network. The families of L_{m,t}, each a pure function of tensors here:

- reconstruction and prediction (autoencoding, forecasting future frames, cross-modal
  transfer such as flow from RGB): :func:`reconstruction_loss`, the mean squared error;
- temporal ordering, arrow of time and audio-visual alignment, binary tasks on a small head:
  :func:`binary_task_loss`;
- multi-modal contrastive: :func:`info_nce`, the same clip in another modality is the positive,
  the other clips of the batch are the negatives;
- distillation: :func:`distill_loss`, per-stage L2 (mean squared difference) to the detached
  teacher's maps, weighted per stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from selfsup.precision import float32_loss


@float32_loss
def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a decoded clip and its target, same shape (B, C, T, ...).

    Reconstruction (target: the input), future prediction (target: the last N frames) and
    cross-modal prediction (target: another modality's input) of Sec. 3.1.
    """
    return F.mse_loss(prediction, target)


@float32_loss
def binary_task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of logits (B,) against labels (B,) in {0, 1}, averaged.

    Temporal ordering (shuffled vs in order), arrow of time (forward vs reversed) and multi-modal
    alignment (aligned vs shifted) of Sec. 3.1.
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits))


@float32_loss
def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float = 0.1,
             offset: int = 0) -> torch.Tensor:
    """InfoNCE of ``anchors`` (B, D) against ``candidates`` (N, D) of another modality, averaged.

    Both are l2-normalised; with s_ij = a_i . c_j / temperature the loss of anchor i is
    -log(exp(s_ii) / sum_j exp(s_ij)): candidate i (the same clip, same time) is the positive,
    the other clips are negatives. The multi-modal contrastive task of Sec. 3.1. Under DDP the
    candidates are every process's (N = world x B) and anchor i's positive is candidate ``offset + i``.
    """
    a = F.normalize(anchors, dim=1)
    c = F.normalize(candidates, dim=1)
    target = torch.arange(len(a), device=a.device) + offset
    return F.cross_entropy(a @ c.T / temperature, target)


@float32_loss
def distill_loss(student: Sequence[torch.Tensor | None], teacher: Sequence[torch.Tensor | None],
                 layer_weights: Sequence[float]) -> torch.Tensor:
    """sum_l w_l mean((student_l - teacher_l)^2) over the stages with w_l > 0.

    ``student[l]`` and ``teacher[l]`` are matching maps of the same shape (the RGB network's stage l
    through its learned projection, and another modality's stage l resized to it); the teacher is
    detached, so only the student learns. Stages with weight 0 are skipped (the student entry may
    be None there). L_d of Eq. 1, as a mean so that stage sizes do not weigh.
    """
    total = None
    for s, t, w in zip(student, teacher, layer_weights, strict=True):
        if w > 0:
            term = w * F.mse_loss(s, t.detach())
            total = term if total is None else total + term
    if total is None:
        raise ValueError("every distillation layer weight is 0: there is nothing to distill")
    return total
