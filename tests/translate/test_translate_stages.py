"""The translate and translate_eval stages on a small digits-bg: one MLflow run with its losses, sample
grids and scores; a SIGKILLed run resumed to identical metrics and weights; bad knobs refused before any
data is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import REPO, kill_after_first_checkpoint, write_params
from selfsup.tracking import EXPERIMENT

TINY = {"steps": 6, "batch_size": 4, "width": 4, "n_blocks": 2, "disc_width": 4, "n_patches": 16, "head_dim": 8,
        "sample_every": 3, "checkpoint_every": 2, "eval_panel": 4, "judge_steps": 20}


def stage(name: str, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"), *args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def _params(project: Path, **translate: object) -> None:
    write_params(project, translate={**TINY, **translate}, train={"device": "cpu", "threads": 1})


def test_a_translation_run_is_one_mlflow_run_with_its_grids_and_scores(project: Path, small_digits_bg: Path) -> None:
    _params(project, method="cut")
    stage("translate", project, "--data", str(small_digits_bg), "--out", str(project / "tr"), "--checkpoints",
          str(project / "ck"), "--tag", "run=translate-cut")
    metrics = json.loads((project / "tr" / "metrics.json").read_text())
    assert metrics["method"] == "cut" and metrics["steps"] == 6 and metrics["seconds_per_step"] > 0
    assert metrics["domains"] == {"a_train": 629, "b_train": 629, "test": 539}
    assert sorted(p.name for p in (project / "tr" / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    stage("translate_eval", project, "--data", str(small_digits_bg), "--model", str(project / "tr" / "model.pt"),
          "--run", str(project / "tr" / "run.json"), "--out", str(project / "ev"))
    scores = json.loads((project / "ev" / "metrics.json").read_text())
    truth = scores["baselines"]["ground_truth"]
    assert truth["l1"] == 0 and truth["ssim"] == pytest.approx(1.0) and scores["n_test"] == 539
    assert scores["baselines"]["identity"]["l1"] > scores["baselines"]["black_background"]["l1"]
    for key in ("l1", "l1_se", "psnr", "ssim", "content", "content_se", "fid", "kid"):
        assert key in scores["translation"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "translate-cut" and run.data.tags["stage"] == "translate"
    assert run.data.params["translate.method"] == "cut"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "samples")} == {
        "samples/step_000003.png", "samples/step_000006.png"}
    assert run.data.metrics["translate_eval/l1"] == pytest.approx(scores["translation"]["l1"])
    assert "train/nce" in run.data.metrics and "train/d_loss" in run.data.metrics


def test_bad_knobs_fail_before_the_data_is_read(project: Path) -> None:
    _params(project, method="cut")
    for knob, match in (("translate.method=pix2pix", "translate.method"), ("translate.similarity=true", "SimDCL")):
        proc = stage("translate", project, "--data", str(project / "missing"), "--out", str(project / "tr"),
                     "--checkpoints", str(project / "ck"), "--no-mlflow", "-S", knob, check=False)
        assert proc.returncode == 1 and "ConfigError" in proc.stderr and match in proc.stderr, proc.stderr
    proc = stage("translate", project, "--data", str(project / "missing"), "--out", str(project / "tr"),
                 "--checkpoints", str(project / "ck"), "--no-mlflow", check=False)
    assert proc.returncode == 1 and "DataError" in proc.stderr and "prepare_images" in proc.stderr


@pytest.mark.slow
def test_a_sigkilled_dclgan_run_resumes_to_identical_metrics_and_weights(project: Path, small_digits_bg: Path) -> None:
    """DCLGAN holds the most state: two generators, two discriminators, two heads, two Adam optimisers."""
    _params(project, method="dclgan", steps=8, sample_every=4)
    args = ["--data", str(small_digits_bg), "--checkpoints"]
    stage("translate", project, *args, str(project / "ck_full"), "--out", str(project / "full"), "--no-mlflow")
    cmd = [sys.executable, str(REPO / "stages" / "translate.py"), "--params", str(project / "params.yaml"), *args,
           str(project / "ck_cut"), "--out", str(project / "cut"), "--no-mlflow"]
    kill_after_first_checkpoint(cmd, project, project / "ck_cut" / "last.pt")
    assert not (project / "cut" / "metrics.json").exists()
    stage("translate", project, *args, str(project / "ck_cut"), "--out", str(project / "cut"), "--no-mlflow")

    def load(run: str) -> tuple[dict, dict]:
        metrics = json.loads((project / run / "metrics.json").read_text())
        state = torch.load(project / run / "model.pt", weights_only=True)["state"]
        return {k: v for k, v in metrics.items() if k not in ("seconds", "seconds_per_step", "peak_rss_mib")}, state

    (full, full_state), (resumed, resumed_state) = load("full"), load("cut")
    assert resumed == full
    assert full_state.keys() == resumed_state.keys()
    for k in full_state:
        assert torch.equal(full_state[k], resumed_state[k]), k
    for png in ("step_000004.png", "step_000008.png"):
        assert (project / "cut" / "samples" / png).read_bytes() == (project / "full" / "samples" / png).read_bytes()


def test_an_unreachable_mlflow_server_stops_the_stage_before_training(project: Path, small_digits_bg: Path) -> None:
    from servers import free_port

    _params(project, method="cut")
    uri = f"http://127.0.0.1:{free_port()}"
    cmd = [sys.executable, str(REPO / "stages" / "translate.py"), "--params", str(project / "params.yaml"), "--data",
           str(small_digits_bg), "--out", str(project / "tr"), "--checkpoints", str(project / "ck")]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: TrackingError:") and uri in line and "unset MLFLOW_TRACKING_URI" in line
    assert not (project / "ck" / "last.pt").exists() and not (project / "tr" / "metrics.json").exists()
