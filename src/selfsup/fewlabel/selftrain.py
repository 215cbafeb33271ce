"""Stage ``selftrain``: a teacher pseudo-labels the unlabeled images; a noised student learns from the
labels and the pseudo-labels together.

Zoph, Ghiasi, Lin, Cui, Liu, Cubuk, Le, "Rethinking Pre-training and Self-training" (NeurIPS 2020),
Sec. 3, after Noisy Student (Xie et al., CVPR 2020): the teacher, trained on the labeled subset (the
``finetune`` stage's from-scratch arm, or its pretrained-and-fine-tuned arm: ``selftrain.teacher``),
predicts every train image outside the subset once, un-augmented and in eval mode; the predictions
become hard (one-hot) or soft pseudo-labels, optionally only those whose top probability reaches
``selftrain.threshold``. The student (the teacher's architecture, randomly initialised or from the
pretraining's weights: ``selftrain.student_init``) trains on a labeled batch and a pseudo-labeled
batch each step, both augmented at ``selftrain.train.augment`` and noised with dropout before the
head (``selftrain.train.dropout``), with the normalised loss of Sec. 3
(:func:`~selfsup.fewlabel.losses.normalised_selftraining_loss`; the running means are exponential
averages with factor ``selftrain.ema``). With ``selftrain.iterations`` > 1 each student becomes the
next round's teacher.

Outputs: ``student.pt`` (the last round's), ``metrics.json`` (each round's student test top-1 with
its standard error, the teacher's, and the pseudo-labels' accuracy and kept fraction, measured with
the hidden labels for the record only) and ``runs.json`` (each round's MLflow run, tagged with its
teacher's run id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.config import Config
from selfsup.errors import ConfigError
from selfsup.fewlabel.classifier import (
    BatchSampler,
    Classifier,
    ClassifierTask,
    Objective,
    load_classifier,
    make_classifier,
    predict_logits,
    pretrained_spec,
    save_classifier,
    top1,
)
from selfsup.fewlabel.losses import normalised_selftraining_loss, pseudo_labels, soft_cross_entropy
from selfsup.fewlabel.runs import LabeledData, file_digest, load_labeled, peak_rss_mib, train_arm
from selfsup.io import write_json
from selfsup.params import save_config


class SelftrainObjective(Objective):
    """One labeled and one pseudo-labeled batch per step, in one forward pass; the normalised loss."""

    nan_hint = "lower selftrain.train.lr"

    def __init__(self, labeled: np.ndarray, pseudo_pool: np.ndarray, targets: torch.Tensor, batch_size: int,
                 seed: int, alpha: float, ema: float) -> None:
        self.labeled = BatchSampler(labeled, batch_size, seed)
        self.pseudo = BatchSampler(pseudo_pool, batch_size, seed + 1)
        self.targets = targets  # (N_train, C): rows of the pseudo pool filled
        self.alpha, self.ema = alpha, ema
        self.means = torch.zeros(2, dtype=torch.float64)  # running mean of L_h, L_p
        self.updates = 0

    def __call__(self, task: ClassifierTask, step: int) -> dict[str, torch.Tensor]:
        li, pi = self.labeled(step), self.pseudo(step)
        logits = task.model(task.batch(np.concatenate([li, pi])))
        human = F.cross_entropy(logits[: len(li)], task.labels[li].to(task.device))
        pseudo = soft_cross_entropy(logits[len(li):], self.targets[pi].to(task.device)).mean()
        current = torch.tensor([human.item(), pseudo.item()], dtype=torch.float64)
        self.means = current if self.updates == 0 else self.ema * self.means + (1 - self.ema) * current
        self.updates += 1
        loss = normalised_selftraining_loss(human, pseudo, float(self.means[0]), float(self.means[1]), self.alpha)
        return {"loss": loss, "human": human.detach(), "pseudo": pseudo.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"means": self.means.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.means, self.updates = state["means"].clone(), int(state["updates"])


def label_pool(teacher: Classifier, data: LabeledData, mode: str, threshold: float, device: torch.device
               ) -> tuple[np.ndarray, torch.Tensor, dict[str, float]]:
    """The pseudo-labeled pool (indices kept), targets for every train row, and the pool's diagnostics
    (kept fraction; accuracy of the kept pseudo-labels, read from the hidden labels for the record)."""
    unlabeled = data.unlabeled()
    logits = predict_logits(teacher, data.train_images[torch.from_numpy(unlabeled)], device)
    targets, keep = pseudo_labels(logits, mode, threshold)
    full = torch.zeros(len(data.train_labels), data.n_classes)
    full[torch.from_numpy(unlabeled)] = targets
    kept = unlabeled[keep.numpy()]
    if len(kept) < 2:
        raise ConfigError(f"selftrain.threshold={threshold} keeps {len(kept)} of the {len(unlabeled)} pseudo-labels; "
                         f"lower it")
    correct = logits.argmax(1).numpy()[keep.numpy()] == data.train_labels[kept]
    return kept, full, {"kept_fraction": len(kept) / len(unlabeled), "pseudo_label_accuracy": float(correct.mean())}


def run_selftrain(cfg: Config, data_dir: Path, subsets_dir: Path, finetune_models: Path, out_dir: Path,
                  checkpoint_dir: Path, teacher_runs: Path | None = None, pretrain_model: Path | None = None,
                  track: bool = True, model_dir: Path | None = None) -> dict:
    """Self-train ``selftrain.iterations`` rounds from the chosen arm of the ``finetune`` stage (its classifiers
    in ``finetune_models``, its ``runs.json`` in ``teacher_runs``); write and return the metrics."""
    st = cfg.selftrain
    teacher_path = Path(finetune_models) / f"{st.teacher}.pt"
    teacher, spec, saved = load_classifier(teacher_path, "finetune")
    data = load_labeled(data_dir, subsets_dir, float(saved["label_fraction"]))
    pretrained = None
    if st.student_init == "pretrained":
        if pretrain_model is None:
            raise ConfigError("selftrain.student_init=pretrained needs --pretrain-model (the pretrain stage's "
                              "model.pt); pass it, or use selftrain.student_init=random")
        _, pretrained = pretrained_spec(pretrain_model)
    teacher_run = json.loads(Path(teacher_runs).read_text()).get(st.teacher, "") if teacher_runs else ""
    device = torch.device("cpu")
    teacher_top1 = top1(teacher, data.test_images, data.test_labels, device)
    metrics: dict = {"label_fraction": data.fraction, "labels": len(data.labeled), "teacher": st.teacher,
                     "student_init": st.student_init, "augment": st.train.augment, "pseudo": st.pseudo,
                     **{f"teacher_{k}": v for k, v in teacher_top1.items()}}
    runs = {}
    digest = file_digest(teacher_path)
    for r in range(st.iterations):
        kept, targets, pool = label_pool(teacher, data, st.pseudo, st.threshold, device)
        student = make_classifier(spec, data.n_classes, data.meta, cfg.seed + 3 + r, st.train.dropout, pretrained)
        objective = SelftrainObjective(data.labeled, kept, targets, st.train.batch_size, cfg.seed + r, st.alpha, st.ema)
        student, result, run_id = train_arm(
            cfg, "selftrain", f"round{r + 1}", student, objective, data, st.train, objective.pseudo.per_epoch,
            {"teacher": digest, "round": str(r)}, checkpoint_dir, track, {"teacher_run_id": teacher_run})
        metrics.update({f"round{r + 1}_{k}": v for k, v in {**pool, **result}.items()})
        runs[f"round{r + 1}"] = run_id or ""
        teacher, teacher_run = student, run_id or ""
        digest = f"{digest}+round{r + 1}"
        device = next(student.parameters()).device
    metrics["student_top1"] = metrics[f"round{st.iterations}_top1"]
    metrics["student_top1_stderr"] = metrics[f"round{st.iterations}_top1_stderr"]
    metrics["gain_over_teacher"] = metrics["student_top1"] - metrics["teacher_top1"]
    save_classifier(Path(model_dir or out_dir) / "student.pt", cfg, teacher, spec, data.n_classes, data.meta,
                    label_fraction=data.fraction)
    metrics["peak_rss_mib"] = peak_rss_mib()
    write_json(Path(out_dir) / "metrics.json", metrics)
    write_json(Path(out_dir) / "runs.json", runs)
    save_config(cfg, Path(out_dir) / "config.yaml")
    return metrics
