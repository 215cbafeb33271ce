"""The subsets, finetune and distill stages on a tiny dataset: outputs, one set of labeled indices for
every arm, resume after SIGKILL to the same metrics, and bad knobs refused by check_params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_RUN, kill_after_first_checkpoint, tiny_dataset, write_params
from selfsup.fewlabel.classifier import ClassifierTask, LabelObjective, load_classifier
from selfsup.fewlabel.distill import DistillObjective
from selfsup.fewlabel.runs import load_labeled
from selfsup.params import load_config
from selfsup.pretrain import pretrain

FEW = {"subsets": {"fractions": [0.25, 0.5]},
       "finetune": {"label_fraction": 0.25, "train": {"steps": 40, "batch_size": 8, "checkpoint_every": 5}},
       "distill": {"train": {"steps": 40, "batch_size": 16, "checkpoint_every": 5}}}


def stage(name: str, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"), *args]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def pretrained(project: Path) -> Path:
    data = tiny_dataset(project / "data", n_train=96, n_test=32)
    write_params(project, method="simclr", **{**TINY_RUN, **FEW, "backbone": {"name": "small_cnn", "width": 8},
                                              "train": {**TINY_RUN["train"], "device": "cpu"}})
    pretrain(load_config(project / "params.yaml"), data, project / "pre", project / "ck" / "pre", track=False)
    stage("subsets", project, "--data", str(data), "--out", str(project / "subsets"))
    return project


def finetune_args(project: Path, out: str) -> list[str]:
    return ["--data", str(project / "data"), "--subsets", str(project / "subsets"), "--model",
            str(project / "pre" / "model.pt"), "--out", str(project / out), "--checkpoints",
            str(project / out / "ck"), "--no-mlflow"]


def distill_args(project: Path, out: str, teacher: str = "ft") -> list[str]:
    return ["--data", str(project / "data"), "--subsets", str(project / "subsets"), "--teacher",
            str(project / teacher / "finetuned.pt"), "--out", str(project / out), "--checkpoints",
            str(project / out / "ck"), "--no-mlflow"]


def selftrain_args(project: Path, out: str) -> list[str]:
    return ["--data", str(project / "data"), "--subsets", str(project / "subsets"), "--finetune", str(project / "ft"),
            "--pretrain-model", str(project / "pre" / "model.pt"), "--out", str(project / out), "--checkpoints",
            str(project / out / "ck"), "--no-mlflow"]


def kill_at(cmd_args: list[str], name: str, project: Path, checkpoint: Path) -> None:
    cmd = [sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"), *cmd_args]
    kill_after_first_checkpoint(cmd, project, checkpoint)


def without_time(metrics: dict) -> dict:
    """The metrics but wall time and peak memory, which differ between an interrupted run and a whole one."""
    return {k: v for k, v in metrics.items() if not k.endswith("seconds") and k != "peak_rss_mib"}


@pytest.mark.slow
def test_finetune_and_distill_write_their_outputs_and_resume_after_sigkill(pretrained: Path) -> None:
    project = pretrained
    stage("finetune", project, *finetune_args(project, "ft"))
    full = json.loads((project / "ft" / "metrics.json").read_text())
    assert full["labels"] == json.loads((project / "subsets/subsets.json").read_text())["subsets"]["25pct"]["labels"]
    for arm in ("finetuned", "scratch"):
        assert 0.0 <= full[f"{arm}_top1"] <= 1.0
        assert full[f"{arm}_top1_stderr"] == pytest.approx(
            (full[f"{arm}_top1"] * (1 - full[f"{arm}_top1"]) / 32) ** 0.5)
    assert full["pretraining_gain"] == full["finetuned_top1"] - full["scratch_top1"]
    assert full["peak_rss_mib"] > 50

    kill_at(finetune_args(project, "ft-killed"), "finetune", project, project / "ft-killed/ck/finetuned/last.pt")
    assert not (project / "ft-killed/metrics.json").exists()
    resumed = stage("finetune", project, *finetune_args(project, "ft-killed"))
    assert "resumed from" in resumed.stderr
    assert without_time(json.loads((project / "ft-killed/metrics.json").read_text())) == without_time(full)
    a, _, _ = load_classifier(project / "ft/finetuned.pt", "finetune")
    b, _, _ = load_classifier(project / "ft-killed/finetuned.pt", "finetune")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    stage("distill", project, *distill_args(project, "ds"))
    distilled = json.loads((project / "ds" / "metrics.json").read_text())
    assert distilled["teacher_top1"] == full["finetuned_top1"]
    assert distilled["student_parameters"] == distilled["teacher_parameters"]  # self-distillation
    kill_at(distill_args(project, "ds-killed"), "distill", project, project / "ds-killed/ck/self/last.pt")
    stage("distill", project, *distill_args(project, "ds-killed"))
    assert without_time(json.loads((project / "ds-killed/metrics.json").read_text())) == without_time(distilled)

    write_params(project, selftrain={"iterations": 2, "student_init": "pretrained", "threshold": 0.0, "train": {
        "steps": 30, "batch_size": 8, "checkpoint_every": 5, "augment": "s4", "dropout": 0.3}})
    stage("selftrain", project, *selftrain_args(project, "st"))
    selftrained = json.loads((project / "st" / "metrics.json").read_text())
    assert selftrained["teacher_top1"] == full["finetuned_top1"]
    assert selftrained["round1_kept_fraction"] == selftrained["round2_kept_fraction"] == 1.0
    assert selftrained["student_top1"] == selftrained["round2_top1"]
    kill_at(selftrain_args(project, "st-killed"), "selftrain", project, project / "st-killed/ck/round1/last.pt")
    stage("selftrain", project, *selftrain_args(project, "st-killed"))
    assert without_time(json.loads((project / "st-killed/metrics.json").read_text())) == without_time(selftrained)

    write_params(project, distill={**FEW["distill"], "student": {"name": "small_cnn", "width": 4}})
    stage("distill", project, *distill_args(project, "ds-small"))
    small = json.loads((project / "ds-small" / "metrics.json").read_text())
    assert small["student_parameters"] < small["teacher_parameters"]
    assert small["student"].startswith("small_cnn (width 4)")


def test_every_arm_reads_the_labels_of_the_subset_file_alone(project: Path) -> None:
    data_dir = tiny_dataset(project / "data", n_train=64)
    (project / "subsets").mkdir()
    chosen = [1, 5, 9, 14, 30, 41, 50, 63]
    (project / "subsets" / "25pct.txt").write_text("".join(f"{i}\n" for i in chosen))
    data = load_labeled(data_dir, project / "subsets", 0.25)
    assert data.labeled.tolist() == chosen
    visible = data.visible_labels()
    assert (visible >= 0).nonzero().flatten().tolist() == chosen
    assert visible[chosen].tolist() == data.train_labels[chosen].tolist()
    assert sorted(set(data.unlabeled().tolist()) | set(chosen)) == list(range(64))
    seen = set()
    objective = LabelObjective(data.labeled, 4, seed=0)  # finetune: both arms
    for step in range(20):
        seen |= set(objective.sampler(step).tolist())
    assert seen == set(chosen)

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 4)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w.expand(len(x), 4)

    cfg = load_config(write_params(project, finetune={"train": {"augment": "none"}}))
    distill = DistillObjective(Recorder(), np.arange(64), 16, 0, 1.0, 0.5)  # Eq. 3: labels of the subset only
    task = ClassifierTask("t", Model(), distill, data.train_images, visible, cfg.finetune.train, 4, {},
                          torch.device("cpu"))
    labels_seen = []
    for step in range(4):
        index = distill.sampler(step)
        labels_seen += [int(i) for i in index if task.labels[i] >= 0]
    assert set(labels_seen) <= set(chosen)


@pytest.mark.parametrize(("values", "message"), [
    ({"subsets": {"fractions": [0.0]}}, "subsets.fractions"),
    ({"subsets": {"fractions": [1.5]}}, "subsets.fractions"),
    ({"finetune": {"label_fraction": 0.05}}, "is not among"),
    ({"selftrain": {"threshold": 1.2}}, "selftrain.threshold"),
    ({"distill": {"student": {"name": "vgg11"}}}, "distill.student.name"),
    ({"selftrain": {"teacher": "imagenet"}}, "selftrain.teacher"),
])
def test_bad_few_label_knobs_stop_check_params_in_one_line(project: Path, values: dict, message: str) -> None:
    write_params(project, **values)
    proc = subprocess.run([sys.executable, str(REPO / "stages/check_params.py"), "--params",
                           str(project / "params.yaml"), "--out-dir", str(project / "config")],
                          cwd=project, capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ConfigError") and message in lines[0], proc.stderr
    assert not (project / "config").exists()
