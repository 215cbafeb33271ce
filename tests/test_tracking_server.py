"""A team's MLflow: ``mlflow server`` on localhost, its runs in a real PostgreSQL database and its artifacts in a
local folder. A pretrain and its evaluation record into it what they record into the sqlite default, and
still do when the server is stopped in the middle of the pretrain: brought back before the run ends, or
only after it (the next stage sends what the pretrain kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, TINY_RUN, tiny_dataset, write_params
from selfsup.tracking import EXPERIMENT
from servers import MlflowServer, PostgresServer

ENV_VARS = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> MlflowServer:
    pg = PostgresServer()
    pg.start()
    mlflow = MlflowServer(pg.create_database("mlflow"), tmp_path_factory.mktemp("mlflow"))
    yield mlflow
    mlflow.remove()
    pg.remove()


def _run_stages(root: Path, uri: str | None, pretrain: bool = True) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    base = [sys.executable]
    if pretrain:
        subprocess.run([*base, str(REPO / "stages" / "pretrain.py"), "--data", "data", "--out", "out",
                        "--checkpoints", "ck"], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run([*base, str(REPO / "stages" / "baseline.py"), "--data", "data", "--out", "baseline"], cwd=root,
                   env=env, check=True, capture_output=True)
    subprocess.run([*base, str(REPO / "stages" / "evaluate.py"), "--data", "data", "--model", "out/model.pt", "--run",
                    "out/run.json", "--baseline", "baseline/metrics.json", "--out", "evaluate"], cwd=root, env=env,
                   check=True, capture_output=True)


def _record(client: MlflowClient) -> tuple[object, dict]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    evaluate = sorted(a.path for a in client.list_artifacts(run.info.run_id, "evaluate"))
    return run, {"metrics": sorted(run.data.metrics), "params": run.data.params, "artifacts": artifacts,
                 "evaluate": evaluate, "name": run.info.run_name, "status": run.info.status,
                 "stage": run.data.tags.get("stage"), "description": run.data.tags.get("mlflow.note.content")}


@pytest.mark.slow
def test_a_pretrain_and_its_evaluation_record_into_the_server_as_into_sqlite(tmp_path: Path,
                                                                              server: MlflowServer) -> None:
    records = {}
    for store in ("sqlite", "server"):
        root = tmp_path / store
        root.mkdir()
        shutil_params(root)
        tiny_dataset(root / "data")
        write_params(root, method="simclr", **{**TINY_RUN, "epochs": 1})
        _run_stages(root, server.uri if store == "server" else None)
        client = MlflowClient(server.uri if store == "server" else f"sqlite:///{root / 'mlflow.db'}")
        run, records[store] = _record(client)
        assert json.loads((root / "out" / "run.json").read_text())["run_id"] == run.info.run_id
    server_record, sqlite_record = records["server"], records["sqlite"]
    assert server_record == sqlite_record
    assert "model.pt" in server_record["artifacts"] and server_record["status"] == "FINISHED"
    assert not (tmp_path / "server" / "mlflow.db").exists() and not (tmp_path / "server" / "mlruns").exists()
    assert any(server.artifacts.rglob("model.pt"))  # the server holds the artifacts, not the working folder


def shutil_params(root: Path) -> None:
    import shutil

    shutil.copytree(REPO / "params", root / "params")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")


# -- the server lost in the middle of a run -------------------------------------------------------------------
OUTAGE_RUN = {**TINY_RUN, "epochs": 30, "train": {**TINY_RUN["train"], "log_every": 1}}
TIMING = ("seconds",)  # metrics that measure time differ between any two runs


def _env(uri: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return {**env, "SELFSUP_MLFLOW_RETRY_SECONDS": "1", **extra}


def _prepare(root: Path) -> Path:
    root.mkdir()
    shutil_params(root)
    tiny_dataset(root / "data")
    write_params(root, method="simclr", **OUTAGE_RUN)
    return root


def _histories(client: MlflowClient, run_id: str) -> dict[str, list]:
    """Every metric's (step, value) history; timing metrics by step only."""
    run = client.get_run(run_id)
    return {key: [(m.step, None if any(t in key for t in TIMING) else m.value)
                  for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]
            for key in run.data.metrics}


def _full_record(client: MlflowClient) -> dict:
    """The store's one run as :func:`_record` gives it, with every metric's history."""
    run, record = _record(client)
    return {**record, "histories": _histories(client, run.info.run_id)}


@pytest.fixture
def own_server(tmp_path: Path) -> MlflowServer:
    """A server on its own PostgreSQL, for a drill that stops and restarts it."""
    pg = PostgresServer()
    pg.start()
    server = MlflowServer(pg.create_database("mlflow"), tmp_path)
    yield server
    server.remove()
    pg.remove()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The outage run's pretrain and evaluation recorded into the sqlite default, undisturbed."""
    root = _prepare(tmp_path_factory.mktemp("reference") / "root")
    _run_stages(root, None)
    return _full_record(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"))


def _pretrain_through_an_outage(root: Path, server: MlflowServer, back_before_the_end: bool) -> str:
    """Run pretrain against ``server``, stop the server once the run has logged a loss, and bring it back
    either as soon as the stage reports the outage or only after the stage has ended; returns the log."""
    import time

    log_path = root / "pretrain.log"
    env = _env(server.uri, SELFSUP_MLFLOW_FLUSH_SECONDS="120" if back_before_the_end else "2")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "pretrain.py"), "--data", "data", "--out",
                                 "out", "--checkpoints", "ck"], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        client = MlflowClient(server.uri)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name(EXPERIMENT)
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and "train/loss" in runs[0].data.metrics:
                break
            time.sleep(0.2)
        server.stop()
        while proc.poll() is None and "unreachable" not in log_path.read_text():
            time.sleep(0.2)
        assert "unreachable" in log_path.read_text(), "the run ended before it wrote into the stopped server"
        if back_before_the_end:
            server.start()
        assert proc.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    if not back_before_the_end:
        server.start()
    return log_path.read_text()


@pytest.mark.slow
def test_a_server_lost_mid_run_and_back_before_it_ends_gets_every_write(tmp_path: Path, reference: dict,
                                                                        own_server: MlflowServer) -> None:
    server = own_server
    root = _prepare(tmp_path / "root")
    output = _pretrain_through_an_outage(root, server, back_before_the_end=True)
    assert "kept writes were sent" in output
    assert not (root / ".mlflow-pending").exists() or not any((root / ".mlflow-pending").iterdir())
    _run_stages(root, server.uri, pretrain=False)
    client = MlflowClient(server.uri)
    assert _full_record(client) == reference


@pytest.mark.slow
def test_a_server_lost_until_the_run_ends_gets_every_write_from_the_next_stage(
        tmp_path: Path, reference: dict, own_server: MlflowServer) -> None:
    server = own_server
    root = _prepare(tmp_path / "root")
    output = _pretrain_through_an_outage(root, server, back_before_the_end=False)
    assert "still unreachable" in output
    (spilled,) = (root / ".mlflow-pending").glob("*/writes.json")
    writes = json.loads(spilled.read_text())["writes"]
    assert writes[-1] == {"op": "set_terminated", "status": "FINISHED"}
    assert sum("train/loss" in json.dumps(w) for w in writes) >= 10  # training went on without the server
    snapshot = next(spilled.parent.glob("files/*/model.pt"))
    assert snapshot.read_bytes() == (root / "out" / "model.pt").read_bytes()
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "RUNNING"  # the end of the run is in the spilled writes, not yet in the server
    _run_stages(root, server.uri, pretrain=False)  # baseline and evaluate reach the server: they send it
    assert not any((root / ".mlflow-pending").iterdir())
    assert _full_record(client) == reference
