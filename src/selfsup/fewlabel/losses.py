"""The few-label losses, as pure functions.

- :func:`distillation_loss`: SimCLR v2 (Chen et al., NeurIPS 2020, arXiv:2006.10029), Sec. 2.3, Eq. 2:
  ``L = -sum_x sum_y P_T(y|x; tau) log P_S(y|x; tau)`` with ``P(y|x; tau) = softmax(logits / tau)``,
  averaged over the batch. The teacher is fixed: its logits are detached, so no gradient reaches it.
- :func:`distillation_with_labels`: Eq. 3, ``-(1 - alpha) sum_labeled log P_S(y_i|x_i) - alpha sum_x sum_y
  P_T log P_S``: ``alpha = 1`` is Eq. 2 alone. The labeled term uses the student at temperature 1 on
  the labeled rows of the batch only; each term is averaged over its rows.
- :func:`pseudo_labels`: the teacher's targets for self-training (Zoph et al., NeurIPS 2020,
  "Rethinking Pre-training and Self-training", Sec. 3; Xie et al. 2020, Noisy Student): hard
  (one-hot argmax) or soft (its softmax), and a mask of those whose top probability reaches a threshold.
- :func:`normalised_selftraining_loss`: Zoph et al., Sec. 3, "Loss normalization":
  ``L = 1 / (1 + alpha) * (L_h + alpha * (mean_L_h / mean_L_p) * L_p)``, where ``L_h`` / ``L_p`` are
  the human-label and pseudo-label losses of the step and ``mean_L_h`` / ``mean_L_p`` their running
  averages over training (constants for the gradient). It keeps the pseudo-label term on the
  human-label term's scale whatever the pseudo-labels' sharpness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.precision import float32_loss


@float32_loss
def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-row ``-sum_y q(y) log softmax(logits)(y)``."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1)


@float32_loss
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR v2 Eq. 2, averaged over the batch; the teacher's logits carry no gradient."""
    if temperature <= 0:
        raise ConfigError(f"distill.temperature={temperature} must be > 0")
    teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return soft_cross_entropy(student_logits / temperature, teacher).mean()


@float32_loss
def distillation_with_labels(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                             temperature: float, alpha: float) -> torch.Tensor:
    """SimCLR v2 Eq. 3: ``(1 - alpha)`` x cross-entropy on the rows with a label (``labels >= 0``), plus
    ``alpha`` x Eq. 2 on every row. ``alpha = 1`` is Eq. 2 alone; rows without labels add nothing to the
    first term (a batch with none gives it 0)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distill alpha={alpha} must lie in [0, 1]")
    distill = distillation_loss(student_logits, teacher_logits, temperature)
    labeled = labels >= 0
    supervised = (F.cross_entropy(student_logits[labeled], labels[labeled]) if bool(labeled.any())
                  else student_logits.sum() * 0.0)
    return (1.0 - alpha) * supervised + alpha * distill


@torch.no_grad()
def pseudo_labels(teacher_logits: torch.Tensor, mode: str, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N, C) from the teacher's logits and a boolean mask (N,) of the confident rows.

    ``mode`` is ``hard`` (one-hot of the argmax) or ``soft`` (the softmax); a row is kept when its
    top probability is at least ``threshold`` (0 keeps every row).
    """
    if mode not in ("hard", "soft"):
        raise ConfigError(f"selftrain.pseudo={mode!r}: expected 'hard' or 'soft'")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"selftrain.threshold={threshold} must lie in [0, 1]")
    probs = F.softmax(teacher_logits.float(), dim=1)
    top, index = probs.max(dim=1)
    targets = F.one_hot(index, probs.shape[1]).float() if mode == "hard" else probs
    return targets, top >= threshold


@float32_loss
def normalised_selftraining_loss(human_loss: torch.Tensor, pseudo_loss: torch.Tensor, mean_human: float,
                                 mean_pseudo: float, alpha: float) -> torch.Tensor:
    """Zoph et al. 2020, Sec. 3: ``(L_h + alpha * mean_L_h / mean_L_p * L_p) / (1 + alpha)``.

    ``mean_human`` and ``mean_pseudo`` are the running averages (plain floats, so constants for the
    gradient); a non-positive ``mean_pseudo`` (no pseudo-labeled row yet) leaves the pseudo term out.
    """
    if alpha <= 0:
        raise ConfigError(f"selftrain.alpha={alpha} must be > 0")
    scale = mean_human / mean_pseudo if mean_pseudo > 0 else 0.0
    return (human_loss + alpha * scale * pseudo_loss) / (1.0 + alpha)
