"""What every few-label stage shares: the labeled data of a subset, and training one arm.

An arm is one classifier trained by :class:`~selfsup.fewlabel.classifier.ClassifierTask` in the lab's
loop: its own checkpoint folder (a killed stage resumes each arm where it stopped), its own MLflow run
tagged with the stage and the arm (plus the run ids it was made from: the pretraining's, the
teacher's), and its test top-1 with the standard error of the test split.
"""

from __future__ import annotations

import contextlib
import hashlib
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.config import Config
from selfsup.config.fewlabel import ClassifierTrainConfig
from selfsup.data.store import images_tensor, load_meta, load_split
from selfsup.errors import DataError
from selfsup.fewlabel.classifier import Classifier, ClassifierTask, Objective, classifier_loop, top1
from selfsup.fewlabel.subsets import read_subset, subset_name
from selfsup.loop import pick_device
from selfsup.stage_config import stage_params


@dataclass
class LabeledData:
    """The train split (uint8 (N, 3, H, W) images, every label, the subset's indices) and the test split."""

    meta: dict
    train_images: torch.Tensor
    train_labels: np.ndarray
    labeled: np.ndarray
    test_images: torch.Tensor
    test_labels: np.ndarray
    fraction: float

    @property
    def n_classes(self) -> int:
        return len(self.meta["classes"])

    def visible_labels(self) -> torch.Tensor:
        """Train labels with every label outside the subset hidden (-1)."""
        visible = torch.full((len(self.train_labels),), -1, dtype=torch.int64)
        visible[torch.from_numpy(self.labeled)] = torch.from_numpy(self.train_labels[self.labeled].astype(np.int64))
        return visible

    def unlabeled(self) -> np.ndarray:
        """Train indices outside the subset (their labels are never read)."""
        mask = np.ones(len(self.train_labels), dtype=bool)
        mask[self.labeled] = False
        return np.flatnonzero(mask)


def load_labeled(data_dir: Path, subsets_dir: Path, fraction: float) -> LabeledData:
    meta = load_meta(data_dir)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    train_labels, test_labels = np.asarray(train.labels), np.asarray(test.labels)
    if (train_labels < 0).any() or (test_labels < 0).any():
        raise DataError(f"the train and test splits in {data_dir} must be fully labeled for the few-label stages")
    labeled = read_subset(subsets_dir, fraction, len(train_labels))
    return LabeledData(meta, images_tensor(train.images), train_labels, labeled, images_tensor(test.images),
                       test_labels, fraction)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (each stage runs as its own process: the stage's peak)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_digest(path: Path) -> str:
    """A short hash of a file's bytes: a checkpoint built on another teacher or subset is not resumed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def train_arm(cfg: Config, stage: str, arm: str, model: Classifier, objective: Objective, data: LabeledData,
              train: ClassifierTrainConfig, steps_per_epoch: int, inputs: dict[str, str], checkpoint_dir: Path,
              track: bool, tags: dict[str, str]) -> tuple[Classifier, dict[str, float], str | None]:
    """Train one arm to the end (resuming from ``checkpoint_dir/<arm>``); its test top-1 (``top1``,
    ``top1_stderr``), training ``seconds``, and its MLflow run id (None untracked).

    ``inputs`` names the files the arm was built from and their digests, part of the checkpoint's
    fingerprint together with ``stage``'s resolved params.
    """
    device = torch.device(pick_device(cfg.train.device))
    task = ClassifierTask(f"{stage} {arm}", model, objective, data.train_images, data.visible_labels(), train,
                          steps_per_epoch, {"stage": stage, "arm": arm, "params": stage_params(cfg, stage),
                                            "inputs": inputs}, device)
    loop = classifier_loop(task, Path(checkpoint_dir) / arm, train.checkpoint_every)
    loop.try_resume()
    all_tags = {"stage": stage, "arm": arm, "label_fraction": str(data.fraction), **tags}
    tracker = loop.attach_run(track, all_tags, f"{stage}-{arm}-{subset_name(data.fraction)}",
                              {k: v for k, v in cfg.flat().items() if k.split(".")[0] in (stage, "seed")})
    with tracker.failing_on_error() if tracker else contextlib.nullcontext():
        loop.fit()
        metrics = {**top1(task.model, data.test_images, data.test_labels, device), "seconds": loop.seconds}
        if tracker:
            tracker.log_metrics({f"{stage}/{k}": v for k, v in metrics.items()}, step=loop.step)
            tracker.describe(f"{stage} {arm}: test top-1 {100 * metrics['top1']:.1f}% "
                             f"(+- {100 * metrics['top1_stderr']:.1f}) with {len(data.labeled)} labels")
            tracker.finish()
    return task.model.eval(), metrics, loop.run_id
