"""Evolving Losses (ELo): multi-modal, multi-task video representation learning with distillation.

Piergiovanni, Angelova, Ryoo, "Evolving Losses for Unsupervised Video Representation Learning",
CVPR 2020, https://arxiv.org/abs/2002.12177. Modules: :mod:`~selfsup.elo.inputs` (arrays to network
inputs), :mod:`~selfsup.elo.augment`, :mod:`~selfsup.elo.networks`, :mod:`~selfsup.elo.tasks`
(label construction), :mod:`~selfsup.elo.losses` (the task losses and distillation, Eq. 1),
:mod:`~selfsup.elo.model`, :mod:`~selfsup.elo.train` and :mod:`~selfsup.elo.features`. The Zipf-KL
fitness of Sec. 3.3 is :mod:`selfsup.eval.zipf`.
"""

from selfsup.elo.features import rgb_features
from selfsup.elo.model import EloModel
from selfsup.elo.train import EloResult, train_elo

__all__ = ["EloModel", "EloResult", "rgb_features", "train_elo"]
