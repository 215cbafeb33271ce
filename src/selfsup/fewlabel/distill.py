"""Stage ``distill``: SimCLR v2's distillation of the fine-tuned network into a student on unlabeled images.

SimCLR v2 (Chen, Kornblith, Swersky, Norouzi, Hinton, NeurIPS 2020, arXiv:2006.10029), Sec. 2.3: the
fine-tuned network is a fixed teacher; a student learns from its temperature-softened predictions on
every train image, with the label hidden (Eq. 2), optionally plus the cross-entropy on the labeled
subset (Eq. 3, ``distill.alpha`` < 1). Self-distillation keeps the teacher's architecture (re-initialised);
``distill.student`` names a different backbone, e.g. a narrower CNN for big-to-small distillation.
Teacher and student see the same augmented batch; the teacher runs in eval mode without gradient.

Outputs: ``student.pt``, ``metrics.json`` (student and teacher test top-1 with standard errors, the
student's gain over the teacher) and ``run.json`` (the student's MLflow run, tagged with the teacher's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from selfsup.config import Config
from selfsup.fewlabel.classifier import (
    BatchSampler,
    Classifier,
    ClassifierTask,
    Objective,
    backbone_spec,
    load_classifier,
    make_classifier,
    save_classifier,
    top1,
)
from selfsup.fewlabel.losses import distillation_with_labels
from selfsup.fewlabel.runs import file_digest, load_labeled, peak_rss_mib, train_arm
from selfsup.io import write_json
from selfsup.params import save_config


class DistillObjective(Objective):
    """SimCLR v2 Eq. 3 (Eq. 2 at ``alpha`` = 1) on batches of every train image."""

    nan_hint = "lower distill.train.lr or raise distill.temperature"

    def __init__(self, teacher: Classifier, pool: np.ndarray, batch_size: int, seed: int, temperature: float,
                 alpha: float) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.sampler = BatchSampler(pool, batch_size, seed)
        self.temperature, self.alpha = temperature, alpha

    def __call__(self, task: ClassifierTask, step: int) -> dict[str, torch.Tensor]:
        index = self.sampler(step)
        x = task.batch(index)
        with torch.no_grad():
            teacher_logits = self.teacher.to(task.device)(x)
        labels = task.labels[index].to(task.device)  # -1 outside the labeled subset
        loss = distillation_with_labels(task.model(x), teacher_logits, labels, self.temperature, self.alpha)
        return {"loss": loss}


def run_distill(cfg: Config, data_dir: Path, subsets_dir: Path, teacher_model: Path, out_dir: Path,
                checkpoint_dir: Path, teacher_runs: Path | None = None, track: bool = True,
                model_dir: Path | None = None) -> dict:
    """Distil the ``finetune`` stage's fine-tuned classifier into a student; write and return the metrics."""
    d = cfg.distill
    teacher, teacher_spec, saved = load_classifier(teacher_model, "finetune")
    data = load_labeled(data_dir, subsets_dir, float(saved["label_fraction"]))
    spec = teacher_spec if d.student is None else backbone_spec(d.student, teacher_spec.view_size)
    student = make_classifier(spec, data.n_classes, data.meta, cfg.seed + 2, d.train.dropout)
    pool = np.arange(len(data.train_labels))
    objective = DistillObjective(teacher, pool, d.train.batch_size, cfg.seed, d.temperature, d.alpha)
    teacher_run = json.loads(Path(teacher_runs).read_text()).get("finetuned", "") if teacher_runs else ""
    tags = {"teacher_run_id": teacher_run, "student": "self" if d.student is None else "other"}
    student, result, run_id = train_arm(cfg, "distill", "self" if d.student is None else "student", student,
                                        objective, data, d.train, objective.sampler.per_epoch,
                                        {"teacher": file_digest(teacher_model)}, checkpoint_dir, track, tags)
    device = next(student.parameters()).device
    teacher_top1 = top1(teacher.to(device), data.test_images, data.test_labels, device)
    metrics = {"label_fraction": data.fraction, "labels": len(data.labeled), "student": spec.describe(),
               "teacher": teacher_spec.describe(), "student_parameters": _parameters(student.extractor),
               "teacher_parameters": _parameters(teacher.extractor),
               **{f"student_{k}": v for k, v in result.items()}, **{f"teacher_{k}": v for k, v in teacher_top1.items()}}
    metrics["gain_over_teacher"] = metrics["student_top1"] - metrics["teacher_top1"]
    save_classifier(Path(model_dir or out_dir) / "student.pt", cfg, student, spec, data.n_classes, data.meta,
                    label_fraction=data.fraction)
    metrics["peak_rss_mib"] = peak_rss_mib()
    write_json(Path(out_dir) / "metrics.json", metrics)
    write_json(Path(out_dir) / "run.json", {"run_id": run_id or "", "tracking": bool(run_id)})
    save_config(cfg, Path(out_dir) / "config.yaml")
    return metrics


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
