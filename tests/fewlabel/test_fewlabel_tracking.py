"""Every few-label arm is an MLflow run tagged with its stage and arm; a student's run names its teacher's."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import TINY_RUN, tiny_dataset, write_params
from selfsup.fewlabel.distill import run_distill
from selfsup.fewlabel.finetune import run_finetune
from selfsup.fewlabel.selftrain import run_selftrain
from selfsup.fewlabel.subsets import run_subsets
from selfsup.params import load_config
from selfsup.pretrain import pretrain
from selfsup.tracking import EXPERIMENT


def test_arms_are_tagged_runs_and_students_name_their_teachers(project: Path, monkeypatch, one_thread) -> None:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = tiny_dataset(project / "data", n_train=64)
    train = {"steps": 6, "batch_size": 8, "checkpoint_every": 3}
    cfg = load_config(write_params(project, method="simclr", **{
        **TINY_RUN, "epochs": 1, "subsets": {"fractions": [0.25]},
        "finetune": {"label_fraction": 0.25, "train": train}, "distill": {"train": train},
        "selftrain": {"train": train}, "train": {**TINY_RUN["train"], "device": "cpu"}}))
    pretrain(cfg, data, project / "pre", project / "ck", track=False)
    run_subsets(data, (0.25,), 0, project / "subsets")
    run_finetune(cfg, data, project / "subsets", project / "pre" / "model.pt", project / "ft", project / "ck" / "ft")
    run_distill(cfg, data, project / "subsets", project / "ft" / "finetuned.pt", project / "ds", project / "ck" / "ds",
                teacher_runs=project / "ft" / "runs.json")
    run_selftrain(cfg, data, project / "subsets", project / "ft", project / "st", project / "ck" / "st",
                  teacher_runs=project / "ft" / "runs.json")

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    by_arm = {(r.data.tags["stage"], r.data.tags["arm"]): r for r in runs}
    assert set(by_arm) == {("finetune", "finetuned"), ("finetune", "scratch"), ("distill", "self"),
                           ("selftrain", "round1")}
    assert all(r.data.tags["label_fraction"] == "0.25" and r.info.status == "FINISHED" for r in runs)
    finetuned = by_arm["finetune", "finetuned"].info.run_id
    assert by_arm["distill", "self"].data.tags["teacher_run_id"] == finetuned
    assert by_arm["selftrain", "round1"].data.tags["teacher_run_id"] == finetuned  # selftrain.teacher default
    assert "finetune/top1" in by_arm["finetune", "scratch"].data.metrics
    assert by_arm["distill", "self"].data.params["distill.temperature"] == "1.0"
