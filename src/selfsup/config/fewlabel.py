"""The few-label sections of the configuration: ``subsets`` (the labeled fractions, as files),
``finetune`` (pretrained and from-scratch classifiers on a subset), ``distill`` (SimCLR v2's
distillation) and ``selftrain`` (pseudo-label self-training, Zoph et al. 2020).

The stages are :mod:`selfsup.fewlabel`; these dataclasses only hold the values and their ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config.image import BackboneConfig
from selfsup.errors import ConfigError
from selfsup.schema import knob

AUGMENT_LEVELS = ("none", "s1", "s2", "s3", "s4")


@dataclass(frozen=True)
class SubsetsConfig:
    """Class-balanced labeled subsets of the train split, one index file per fraction (SimCLR's 1% / 10%)."""

    fractions: tuple[float, ...] = knob((0.01, 0.1), gt=0.0, le=1.0,
                                        doc="fractions of every class's train images that keep their label")
    seed: int = knob(0, ge=0, doc="the draw; another seed gives other subsets of the same sizes")

    def check(self, prefix: str) -> None:
        if not self.fractions:
            raise ConfigError(f"{prefix}fractions is empty: list at least one fraction, e.g. [0.01, 0.1]")
        if len(set(self.fractions)) != len(self.fractions):
            raise ConfigError(f"{prefix}fractions={list(self.fractions)} lists a fraction twice")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How one classifier of the few-label stages trains: SGD with Nesterov momentum and a cosine
    decay over a fixed number of steps, so every arm spends the same budget whatever the fraction."""

    steps: int = knob(300, ge=1, doc="optimiser steps (a fixed budget, independent of the subset's size)")
    batch_size: int = knob(64, ge=2)
    lr: float = knob(0.05, gt=0.0, doc="SGD rate (not rescaled with the batch)")
    weight_decay: float = knob(0.0, ge=0.0)
    augment: str = knob("s1", choices=AUGMENT_LEVELS,
                        doc="none; s1 random crops; s2-s4 add RandAugment of growing strength (docs/fewlabel.md)")
    dropout: float = knob(0.0, ge=0.0, lt=1.0, doc="dropout on the features before the classifier")
    checkpoint_every: int = knob(50, ge=1, doc="steps between resumable checkpoints")


@dataclass(frozen=True)
class FinetuneStageConfig:
    """Stage ``finetune``: the pretrained extractor fine-tuned end to end on a subset, next to the same
    budget from scratch (the extractor of ``backbone``, randomly initialised)."""

    label_fraction: float = knob(0.1, gt=0.0, le=1.0, doc="which subset (one of subsets.fractions)")
    train: ClassifierTrainConfig = knob(ClassifierTrainConfig())


@dataclass(frozen=True)
class DistillConfig:
    """Stage ``distill``: SimCLR v2 Sec. 2.3 (Eq. 2, and Eq. 3 with ``alpha`` < 1)."""

    temperature: float = knob(1.0, gt=0.0, doc="tau of teacher and student softmax in Eq. 2")
    alpha: float = knob(1.0, ge=0.0, le=1.0,
                        doc="weight of the distillation term in Eq. 3; 1: Eq. 2 alone (SimCLR v2's main runs), below "
                            "1 adds the labeled cross-entropy with weight 1 - alpha")
    student: BackboneConfig | None = knob(None, doc="the student's backbone; null: the teacher's extractor "
                                                     "re-initialised (self-distillation)")
    train: ClassifierTrainConfig = knob(ClassifierTrainConfig(steps=600, batch_size=256))


@dataclass(frozen=True)
class SelftrainConfig:
    """Stage ``selftrain``: teacher -> pseudo-labels on the unlabeled images -> a noised student on
    labels + pseudo-labels with the normalised loss of Zoph et al. 2020, Sec. 3."""

    teacher: str = knob("finetuned", choices=("finetuned", "scratch"),
                        doc="the finetune stage's pretrained arm or its from-scratch arm")
    student_init: str = knob("random", choices=("random", "pretrained"),
                             doc="random: the teacher's architecture re-initialised; pretrained: the pretraining's "
                                 "weights (Zoph et al.'s pre-trained student)")
    pseudo: str = knob("hard", choices=("hard", "soft"), doc="one-hot argmax or the teacher's distribution")
    threshold: float = knob(0.0, ge=0.0, le=1.0, doc="keep pseudo-labels whose top probability reaches it")
    alpha: float = knob(1.0, gt=0.0, doc="weight of the pseudo-label loss after normalisation")
    ema: float = knob(0.99, ge=0.0, lt=1.0, doc="moving-average factor of the two losses' running means")
    iterations: int = knob(1, ge=1, doc="rounds; each student becomes the next round's teacher")
    train: ClassifierTrainConfig = knob(ClassifierTrainConfig(steps=600, batch_size=256, augment="s3",
                                                              dropout=0.3))
