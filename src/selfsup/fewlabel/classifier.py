"""Classifiers of the few-label stages, their model files, and the task that trains them in the lab's loop.

A :class:`Classifier` is a feature extractor with a linear head that takes the dataset's uint8 images
as they are (it resizes to its view size and normalises inside), so teachers and students of different
view sizes read the same batches. Its extractor is described by an :class:`ExtractorSpec`:

- the pretraining's feature extractor (the method rebuilt from the pretrain model file's config, as
  ``evaluate`` rebuilds it; SimCLR v2's ``eval_from_layer`` makes it end at a projector layer, which
  is how SimCLR v2 fine-tunes "from the middle layer of the projection head"), with or without the
  pretrained weights (the from-scratch arm is the same network randomly initialised);
- or a plain ``backbone`` (a distillation student of another size).

:class:`ClassifierTask` is a :class:`~selfsup.loop.TrainingTask`, so every arm gets the loop's
checkpoints (resume after a kill to the same weights), NaN stop, progress bar and MLflow logging.
One step draws a batch, augments it (:mod:`selfsup.fewlabel.augment`), and applies an
:class:`Objective`: cross-entropy on labels, SimCLR v2's distillation, or self-training's
normalised label + pseudo-label loss.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.augment.views import EvalTransform
from selfsup.config import Config
from selfsup.config.fewlabel import ClassifierTrainConfig
from selfsup.config.image import BackboneConfig
from selfsup.fewlabel.augment import StrengthAugment
from selfsup.loop import Loop, Optimisation, StepOutput, TrainingTask
from selfsup.methods import DataInfo, build_method
from selfsup.model_file import load_model_file, save_model_file
from selfsup.models.backbones import build_backbone
from selfsup.params import config_from_dict
from selfsup.schedules import warmup_cosine
from selfsup.schema import build, to_dict


@dataclass(frozen=True)
class ExtractorSpec:
    """How to rebuild a classifier's extractor: the pretraining's (``pretrain_config`` and ``info`` from
    its model file) or a plain ``backbone``; ``view_size`` is the side its input is resized to."""

    view_size: int
    pretrain_config: dict | None = None
    info: dict | None = None
    backbone: dict | None = None

    def build(self, seed: int) -> nn.Module:
        """A freshly initialised extractor (``torch.manual_seed(seed)`` first, so it is reproducible)."""
        torch.manual_seed(seed)
        if self.backbone is not None:
            return build_backbone(build(BackboneConfig, self.backbone), self.view_size)
        cfg = config_from_dict(self.pretrain_config)
        info = DataInfo(self.info["n_images"], tuple(self.info["mean"]), tuple(self.info["std"]))
        return build_method(cfg, info).feature_extractor()

    def describe(self) -> str:
        if self.backbone is not None:
            return f"{self.backbone['name']} (width {self.backbone.get('width')}) at {self.view_size} px"
        cfg = self.pretrain_config
        return f"{cfg['method']}'s extractor ({cfg['backbone']['name']}) at {self.view_size} px"


def pretrained_spec(pretrain_model: Path) -> tuple[ExtractorSpec, dict[str, torch.Tensor]]:
    """The spec of the pretraining's extractor and its trained weights (keys of the extractor)."""
    saved, cfg = load_model_file(pretrain_model, "pretrain")
    spec = ExtractorSpec(int(saved["view_size"]), cfg.to_dict(), dict(saved["info"]))
    info = DataInfo(saved["info"]["n_images"], tuple(saved["info"]["mean"]), tuple(saved["info"]["std"]))
    method = build_method(cfg, info)
    method.load_state_dict(saved["state"])
    return spec, method.feature_extractor().state_dict()


def backbone_spec(backbone: BackboneConfig, view_size: int) -> ExtractorSpec:
    return ExtractorSpec(view_size, backbone=to_dict(backbone))


class Classifier(nn.Module):
    """``head(dropout(extractor(normalise(resize(images)))))`` on uint8 (N, 3, H, W) images."""

    def __init__(self, extractor: nn.Module, n_classes: int, view_size: int, mean: list[float], std: list[float],
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.transform = EvalTransform(view_size, mean, std)
        self.extractor = extractor
        self.dropout = nn.Dropout(dropout)
        was_training = extractor.training
        with torch.no_grad():
            feature_dim = extractor.eval()(self.transform(torch.zeros(2, 3, view_size, view_size))).flatten(1).shape[1]
        extractor.train(was_training)
        self.head = nn.Linear(feature_dim, n_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.extractor(self.transform(images)).flatten(1)))


def make_classifier(spec: ExtractorSpec, n_classes: int, meta: dict, seed: int, dropout: float = 0.0,
                    extractor_state: dict[str, torch.Tensor] | None = None) -> Classifier:
    """A classifier on ``spec``'s extractor: initialised from ``seed``, then ``extractor_state`` if given."""
    extractor = spec.build(seed)
    if extractor_state is not None:
        extractor.load_state_dict(extractor_state)
    return Classifier(extractor, n_classes, spec.view_size, meta["mean"], meta["std"], dropout)


def save_classifier(path: Path, cfg: Config, model: Classifier, spec: ExtractorSpec, n_classes: int, meta: dict,
                    **extra: Any) -> None:
    """Write ``model`` with what rebuilds it (its spec, classes, normalisation) to ``path`` atomically."""
    save_model_file(path, cfg, model.state_dict(), spec=dataclasses.asdict(spec), n_classes=n_classes,
                    mean=list(meta["mean"]), std=list(meta["std"]), **extra)


def load_classifier(path: Path, stage: str) -> tuple[Classifier, ExtractorSpec, dict]:
    """The classifier saved by ``stage`` (in eval mode), its spec and the file's other entries."""
    saved, _ = load_model_file(path, stage)
    spec = ExtractorSpec(**saved["spec"])
    model = make_classifier(spec, int(saved["n_classes"]), {"mean": saved["mean"], "std": saved["std"]}, 0)
    model.load_state_dict(saved["state"])
    return model.eval(), spec, saved


class BatchSampler:
    """Batches of ``pool`` indices: each epoch a permutation drawn from ``(seed, epoch)``, so step ``t``'s
    batch is a function of ``t`` alone (a resumed run draws the same batches). A pool smaller than
    ``batch_size`` gives whole-pool batches."""

    def __init__(self, pool: np.ndarray, batch_size: int, seed: int) -> None:
        self.pool = np.asarray(pool, dtype=np.int64)
        if len(self.pool) < 2:
            raise ValueError(f"a batch sampler needs at least 2 images, got {len(self.pool)}")
        self.batch_size = min(batch_size, len(self.pool))
        self.per_epoch = len(self.pool) // self.batch_size
        self.seed = seed

    def __call__(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.pool), generator=g).numpy()
        return self.pool[perm[i * self.batch_size : (i + 1) * self.batch_size]]


class Objective(ABC):
    """One step's loss for a :class:`ClassifierTask`; may keep state a resumed run needs."""

    nan_hint = "lower the learning rate of its section's `train.lr`"

    @abstractmethod
    def __call__(self, task: ClassifierTask, step: int) -> dict[str, torch.Tensor]:
        """The step's loss (``loss``) and logged terms, from batches the objective draws through ``task``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state:
            raise ValueError(f"the checkpoint holds objective state ({', '.join(state)}) this objective does not keep")


class LabelObjective(Objective):
    """Cross-entropy on the labeled subset (fine-tuning, and its from-scratch baseline)."""

    def __init__(self, labeled: np.ndarray, batch_size: int, seed: int) -> None:
        self.sampler = BatchSampler(labeled, batch_size, seed)

    def __call__(self, task: ClassifierTask, step: int) -> dict[str, torch.Tensor]:
        index = self.sampler(step)
        loss = F.cross_entropy(task.model(task.batch(index)), task.labels[index].to(task.device))
        return {"loss": loss}


class ClassifierTask(TrainingTask):
    """Train ``model`` with ``objective`` for ``train.steps`` SGD steps (Nesterov momentum 0.9, cosine
    decay without warm-up); ``images`` uint8 (N, 3, H, W) and ``labels`` (N,) of the train split
    (-1 where a label is hidden)."""

    def __init__(self, name: str, model: Classifier, objective: Objective, images: torch.Tensor,
                 labels: torch.Tensor, train: ClassifierTrainConfig, steps_per_epoch: int, settings: dict,
                 device: torch.device) -> None:
        self.name = name
        self.model = model.to(device).train()
        self.objective = objective
        self.images, self.labels = images, labels
        self.device = device
        self.augment = StrengthAugment(train.augment, images.shape[-1])
        self.modules = {"model": self.model}
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=train.lr, momentum=0.9, nesterov=True,
                                         weight_decay=train.weight_decay)
        self.optimizers = {"model": self.optimizer}
        self.lrs = warmup_cosine(train.lr, train.steps)
        self.total_steps = train.steps
        self.steps_per_epoch = max(1, min(steps_per_epoch, train.steps))
        self.settings = settings
        self.nan_hint = objective.nan_hint

    def batch(self, index: np.ndarray) -> torch.Tensor:
        """The augmented uint8 images of ``index`` on the device."""
        return self.augment(self.images[torch.from_numpy(index)]).to(self.device, non_blocking=True)

    def train_step(self, step: int, opt: Optimisation) -> StepOutput:
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.lrs[step])
        with opt.autocast():
            losses = self.objective(self, step)
        opt.step(losses["loss"], self.optimizer)
        return StepOutput({k: v.detach() for k, v in losses.items()})

    def scheduled_values(self, step: int) -> dict[str, float]:
        return {"lr": float(self.lrs[min(step, self.total_steps - 1)])}

    def extra_state(self) -> dict[str, Any]:
        return self.objective.state_dict()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state)


def classifier_loop(task: ClassifierTask, checkpoint_dir: Path | None, checkpoint_every: int,
                    progress: bool = True) -> Loop:
    """The lab's loop around ``task`` (float32; logged every 10 steps), ready to resume and fit."""
    return Loop(task, checkpoint_dir, checkpoint_every, 10, Optimisation(task.device, amp=False), progress)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) for uint8 images, on the CPU."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(images[i : i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


def top1(model: nn.Module, images: torch.Tensor, labels: np.ndarray, device: torch.device) -> dict[str, float]:
    """Test top-1 accuracy and its binomial standard error ``sqrt(p (1 - p) / n)``."""
    predicted = predict_logits(model, images, device).argmax(1).numpy()
    p = float((predicted == np.asarray(labels)).mean())
    return {"top1": p, "top1_stderr": math.sqrt(p * (1 - p) / max(len(labels), 1))}
