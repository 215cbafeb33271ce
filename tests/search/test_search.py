"""The search stage: bad params refused before training, resumption after a kill, parallel workers.

Trials are real short trainings (SimCLR, one epoch on a tiny dataset) scored by the real Zipf-KL,
in a real Optuna journal file, with every trial recorded in a real MLflow sqlite store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import REPO, TINY_RUN, tiny_dataset, write_params
from selfsup.errors import ConfigError
from selfsup.params import load_config
from selfsup.search.space import parse_space
from selfsup.search.storage import JOURNAL
from selfsup.search.study import run_search, study_name
from selfsup.stage_config import restrict

IMAGE_SEARCH = {"target": "image", "sampler": "random", "n_trials": 4, "epochs": 1,
                "space": {"temperature": [0.1, 0.5], "lr": [0.05, 0.5, "log"]}}


def _setup(project: Path, **search: object) -> Path:
    tiny_dataset(project / "data")
    return write_params(project, method="simclr", **TINY_RUN, zipf={"k": 3},
                        search={**IMAGE_SEARCH, **search})


def _study(project: Path) -> optuna.Study:
    cfg = restrict(load_config(project / "params.yaml"), "search")  # the config the search stage runs with
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "study" / JOURNAL)))
    return optuna.load_study(study_name=study_name(cfg), storage=storage)


@pytest.mark.parametrize("search, message", [
    ({"space": {}}, "search.space is empty"),
    ({"target": "elo", "sampler": "random", "space": {"elo.weights.flow.distill": [0.0, 1.5]}},
     "ELo loss weights live in \\[0, 1\\]"),
    ({"sampler": "annealing"}, "search.sampler='annealing' is not allowed"),
    ({"sampler": "cmaes", "space": {"lr": [0.1, 1.0]}}, "cmaes needs at least two searched params"),
    ({"space": {"lr": [1.0, 0.1]}}, "low must be below high"),
    ({"space": {"nosuch.knob": [0.0, 1.0], "lr": [0.1, 1.0]}}, "unknown key nosuch"),
    ({"storage": "sqlite:////no/such/folder/study.db"}, "search.storage='sqlite:////no/such/folder/study.db' "
                                                        "cannot be opened"),
])
def test_bad_search_params_are_a_config_error_naming_the_key_before_training(project: Path, search: dict,
                                                                              message: str) -> None:
    _setup(project, **search)
    with pytest.raises(ConfigError, match=message):
        cfg = load_config(project / "params.yaml")
        parse_space(cfg.search)
        run_search(cfg, project / "data", project / "study", project / "out", track=False)
    assert not (project / "out").exists()
    assert not (project / "study" / JOURNAL).exists() or not _study(project).trials


def _stage(project: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, str(REPO / "stages" / "search.py"), "--params", str(project / "params.yaml"),
           "--data", str(project / "data"), "--study", str(project / "study"), "--out", str(project / "out"), *extra]
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _mlflow_trials(project: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [r for r in runs if r.data.tags.get("stage") == "search-trial"]


@pytest.mark.slow
def test_a_killed_search_continues_the_same_study_without_losing_or_repeating_a_trial(project: Path) -> None:
    _setup(project)
    proc = _stage(project)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (project / "study" / JOURNAL).exists():
            trials = _study(project).trials
            if any(t.number == 2 and t.state == TrialState.RUNNING and len(t.params) == 2 for t in trials):
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = next(t for t in _study(project).trials if t.number == 2)
    assert killed.state == TrialState.RUNNING

    rerun = _stage(project)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    trials = sorted(_study(project).trials, key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert [t.number for t in trials] == list(range(len(trials)))
    assert [t.state for t in trials if t.number == 2] == [TrialState.FAIL]
    retry = [t for t in complete if t.user_attrs.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].params == killed.params
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    finished = [r for r in _mlflow_trials(project) if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["trial"]) for r in finished) == sorted(t.number for t in complete)
    best = yaml.safe_load((project / "out" / "best.yaml").read_text())
    assert set(best) == {"lr", "temperature"}
    rows = (project / "out" / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,zipf_kl,best_so_far,lr,temperature,chance_top1,final_loss,knn_top1")
    assert len(rows) == 1 + len(trials)


@pytest.mark.slow
def test_two_workers_add_trials_to_one_study_and_mlflow_records_each_once(project: Path) -> None:
    _setup(project, n_workers=2, n_trials=5)
    proc = _stage(project)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    trials = _study(project).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5
    runs = _mlflow_trials(project)
    assert sorted(int(r.data.tags["trial"]) for r in runs) == list(range(5))
    assert all(r.info.status == "FINISHED" and "zipf_kl" in r.data.metrics for r in runs)
    assert "database is locked" not in out
