"""The search study on a real PostgreSQL server (localhost): several worker processes on one study, the server
stopped in the middle of a search, and a trial whose worker died on another machine (its heartbeat stops).

The trials compute a cheap analytic fitness from the values read back from their resolved configs; the
storage, the workers, the locks, the heartbeats and the retries are the real ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write_params
from selfsup.config import Config
from selfsup.params import load_config
from selfsup.search.objectives import TrialResult
from selfsup.search.storage import StorageError, redact
from selfsup.search.study import run_search, study_name
from servers import PostgresServer

SPACE = {"elo.weights.rgb.reconstruct": [0.0, 1.0], "elo.weights.flow.distill": [0.0, 1.0]}


def quadratic(cfg: Config, data_dir: Path) -> TrialResult:
    """Squared distance of the trial's two weights (read from its config) to (0.25, 0.75); a module-level
    function, so spawned workers can run it."""
    a, b = cfg.elo.weights.rgb.reconstruct, cfg.elo.weights.flow.distill
    return TrialResult((a - 0.25) ** 2 + (b - 0.75) ** 2, {"a": a, "b": b})


def slow_quadratic(cfg: Config, data_dir: Path) -> TrialResult:
    time.sleep(1.0)
    return quadratic(cfg, data_dir)


@pytest.fixture(scope="module")
def server() -> PostgresServer:
    pg = PostgresServer()
    pg.start()
    yield pg
    pg.remove()


def _search(project: Path, url: str, objective, **settings: object) -> dict:
    params = write_params(project, search={"space": SPACE, "sampler": "random", "storage": url, **settings})
    return run_search(load_config(params), project / "data", project / "study", project / "out", track=False,
                      objective=objective)


def _trials(project: Path, url: str) -> list[optuna.trial.FrozenTrial]:
    cfg = load_config(project / "params.yaml")
    return sorted(optuna.load_study(study_name=study_name(cfg), storage=url).trials, key=lambda t: t.number)


def _params(t: optuna.trial.FrozenTrial) -> tuple[float, ...]:
    return tuple(t.params[k] for k in SPACE)


@pytest.mark.slow
def test_two_workers_share_one_study_in_postgresql(project: Path, server: PostgresServer) -> None:
    url = server.create_database("two_workers")
    metrics = _search(project, url, quadratic, n_trials=6, n_workers=2)
    trials = _trials(project, url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6  # the stopping rule holds across processes
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials
    assert len({_params(t) for t in trials}) == 6
    assert metrics["completed_trials"] == 6 and metrics["best_zipf_kl"] == min(t.value for t in trials)
    assert not (project / "study" / "study.journal").exists()


@pytest.mark.slow
def test_postgresql_stopped_mid_search_fails_clearly_and_a_rerun_continues(project: Path,
                                                                          server: PostgresServer) -> None:
    url = server.create_database("fault_drill")
    n_trials = 8
    stopped, search_over, errors = threading.Event(), threading.Event(), []

    write_params(project, search={"space": SPACE, "sampler": "random", "storage": url, "n_trials": n_trials,
                                  "n_workers": 2})
    name = study_name(load_config(project / "params.yaml"))
    watcher = optuna.storages.RDBStorage(url)  # one connection pool for the polling, not one per poll

    def stop_after_three_trials() -> None:
        """Crash the server once three trials are complete (however slowly the workers start)."""
        while not search_over.is_set():
            try:
                study_id = watcher.get_study_id_from_name(name)
                done = len(watcher.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)))
            except KeyError:  # the study does not exist yet
                done = 0
            if done >= 3:
                try:
                    server.stop("immediate")  # a crash: connections are cut, running transactions lost
                except Exception as exc:  # noqa: BLE001 - reported by the test below
                    errors.append(exc)
                stopped.set()
                return
            time.sleep(0.2)

    stopper = threading.Thread(target=stop_after_three_trials)
    stopper.start()
    try:
        with pytest.raises(StorageError) as failure:
            _search(project, url, slow_quadratic, n_trials=n_trials, n_workers=2)
    finally:
        search_over.set()
        stopper.join()
        watcher.engine.dispose()
    assert stopped.is_set() and errors == []
    message = str(failure.value)
    assert redact(url) in message and "cannot be reached" in message and "rerun the stage" in message

    server.start()
    before = _trials(project, url)
    done_before = [t for t in before if t.state == TrialState.COMPLETE]
    interrupted = [t for t in before if t.state == TrialState.RUNNING]
    assert len(done_before) >= 3 and interrupted  # the crash left trials running
    metrics = _search(project, url, quadratic, n_trials=n_trials, n_workers=2)
    after = _trials(project, url)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials == metrics["completed_trials"]
    assert len({_params(t) for t in complete}) == n_trials  # no trial repeated
    assert {_params(t) for t in done_before} <= {_params(t) for t in complete}  # none redone or lost
    assert {_params(t) for t in interrupted} <= {_params(t) for t in complete}  # the interrupted ones retried
    assert all(t.state == TrialState.FAIL for t in after if t.number in {i.number for i in interrupted})


def test_a_trial_whose_worker_died_elsewhere_is_failed_by_heartbeat_and_retried(project: Path,
                                                                               server: PostgresServer) -> None:
    """A worker on another machine asked for a trial, beat once and died: after the grace period the next
    worker fails it and Optuna's retry callback runs its params again."""
    url = server.create_database("heartbeat")
    write_params(project, search={"space": SPACE, "sampler": "random", "storage": url, "n_trials": 3,
                                  "heartbeat_interval": 1, "grace_period": 2})
    cfg = load_config(project / "params.yaml")
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=study_name(cfg), storage=storage, direction="minimize")
    lost = study.ask()
    lost.set_user_attr("host", "another-machine")
    lost.set_user_attr("pid", 1)
    lost.suggest_float("elo.weights.rgb.reconstruct", 0.0, 1.0)
    lost.suggest_float("elo.weights.flow.distill", 0.0, 1.0)
    storage.record_heartbeat(lost._trial_id)
    time.sleep(3)  # past the grace period: its worker is gone

    metrics = _search(project, url, quadratic, n_trials=3, heartbeat_interval=1, grace_period=2)
    trials = _trials(project, url)
    assert trials[0].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert _params(retries[0]) == _params(trials[0])
    assert metrics["completed_trials"] == 3 and metrics["failed_trials"] == 1


def test_a_grace_period_within_one_heartbeat_is_refused(project: Path) -> None:
    from selfsup.errors import ConfigError

    params = write_params(project, search={"heartbeat_interval": 30, "grace_period": 20})
    with pytest.raises(ConfigError, match="grace_period=20 must exceed"):
        load_config(params)


def test_an_unreachable_postgresql_stops_the_search_before_any_trial(project: Path) -> None:
    from servers import free_port

    url = f"postgresql+psycopg2://selfsup:secret@127.0.0.1:{free_port()}/nothing_listens_here"
    calls = []

    def never(cfg: Config, data_dir: Path) -> TrialResult:
        calls.append(cfg)
        return quadratic(cfg, data_dir)

    with pytest.raises(StorageError) as failure:
        _search(project, url, never, n_trials=2)
    assert "postgresql+psycopg2://selfsup:***@127.0.0.1" in str(failure.value) and "secret" not in str(failure.value)
    assert calls == []
