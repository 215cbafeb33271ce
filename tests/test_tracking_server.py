"""A team's MLflow: ``mlflow server`` on localhost, its runs in a real PostgreSQL database and its artifacts in a
local folder. A pretrain and its evaluation record into it what they record into the sqlite default."""

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


def _run_stages(root: Path, uri: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    base = [sys.executable]
    subprocess.run([*base, str(REPO / "stages" / "pretrain.py"), "--data", "data", "--out", "out", "--checkpoints",
                    "ck"], cwd=root, env=env, check=True, capture_output=True)
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
