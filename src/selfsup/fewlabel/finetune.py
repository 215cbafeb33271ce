"""Stage ``finetune``: the pretrained extractor fine-tuned on a labeled subset, and the same from scratch.

SimCLR (Chen et al. 2020, Sec. 4.2 / App. B.5) and SimCLR v2 (Chen et al. 2020b, Sec. 2.2) fine-tune
the whole pretrained network plus a new linear head on 1% or 10% of the labels; SimCLR v2 starts
from the first layer of its 3-layer projection head (``eval_from_layer``: the extractor the pretrain
model file rebuilds already ends there). Both papers compare against the same network trained from
scratch on the same labels. Here both arms share everything but the initial weights: the subset
file, the budget (``finetune.train.steps`` steps of ``batch_size``), the optimiser (SGD with
Nesterov momentum, cosine decay), the augmentation level and the seed of the head.

Outputs: ``finetuned.pt`` and ``scratch.pt`` (classifier model files; ``finetuned.pt`` is the teacher
of ``distill`` and ``selftrain``), ``metrics.json`` (each arm's test top-1 with its standard error,
the gain of pretraining, wall time) and ``runs.json`` (the arms' MLflow run ids).
"""

from __future__ import annotations

from pathlib import Path

from selfsup.config import Config
from selfsup.fewlabel.classifier import LabelObjective, make_classifier, pretrained_spec, save_classifier
from selfsup.fewlabel.runs import file_digest, load_labeled, peak_rss_mib, train_arm
from selfsup.fewlabel.subsets import subset_path
from selfsup.io import write_json
from selfsup.params import save_config
from selfsup.tracking import read_run_id

ARMS = ("finetuned", "scratch")


def run_finetune(cfg: Config, data_dir: Path, subsets_dir: Path, pretrain_model: Path, out_dir: Path,
                 checkpoint_dir: Path, pretrain_run: Path | None = None, track: bool = True,
                 model_dir: Path | None = None) -> dict:
    """Train both arms (resuming each from its checkpoint), write the outputs (the classifiers to
    ``model_dir``, default ``out_dir``), return the metrics."""
    ft = cfg.finetune
    data = load_labeled(data_dir, subsets_dir, ft.label_fraction)
    spec, pretrained = pretrained_spec(pretrain_model)
    inputs = {"pretrain_model": file_digest(pretrain_model),
              "subset": file_digest(subset_path(subsets_dir, ft.label_fraction))}
    run_id = read_run_id(pretrain_run) if pretrain_run is not None and Path(pretrain_run).is_file() else None
    tags = {"pretrain_run_id": run_id} if run_id else {}
    metrics: dict = {"label_fraction": ft.label_fraction, "labels": len(data.labeled),
                     "extractor": spec.describe(), "augment": ft.train.augment, "steps": ft.train.steps}
    runs = {}
    for arm in ARMS:
        model = make_classifier(spec, data.n_classes, data.meta, cfg.seed + 1, ft.train.dropout,
                                pretrained if arm == "finetuned" else None)
        objective = LabelObjective(data.labeled, ft.train.batch_size, cfg.seed)
        model, result, runs[arm] = train_arm(cfg, "finetune", arm, model, objective, data, ft.train,
                                             objective.sampler.per_epoch, inputs, checkpoint_dir, track, tags)
        save_classifier(Path(model_dir or out_dir) / f"{arm}.pt", cfg, model, spec, data.n_classes, data.meta,
                        arm=arm, label_fraction=ft.label_fraction)
        metrics.update({f"{arm}_{k}": v for k, v in result.items()})
    metrics["pretraining_gain"] = metrics["finetuned_top1"] - metrics["scratch_top1"]
    metrics["peak_rss_mib"] = peak_rss_mib()
    write_json(Path(out_dir) / "metrics.json", metrics)
    write_json(Path(out_dir) / "runs.json", {arm: run or "" for arm, run in runs.items()})
    save_config(cfg, Path(out_dir) / "config.yaml")
    return metrics
