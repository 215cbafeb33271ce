"""Writes kept while the MLflow server is away (selfsup.tracking_outbox), with real MLflow clients: one
pointed at a port where nothing listens, and a sqlite store the kept writes are then sent to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from selfsup.tracking import Tracker
from selfsup.tracking_outbox import PENDING, is_unreachable, replay_pending
from servers import free_port


@pytest.fixture
def dead_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MlflowClient:
    """A client for a tracking server that does not answer (nothing listens on its port)."""
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("SELFSUP_MLFLOW_FLUSH_SECONDS", "0")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(uri)


def test_a_server_that_does_not_answer_is_unreachable_and_a_rejected_request_is_not(
        dead_server: MlflowClient, tmp_path: Path) -> None:
    with pytest.raises(MlflowException) as lost:
        dead_server.get_run("0" * 32)
    assert is_unreachable(lost.value)
    with pytest.raises(MlflowException) as rejected:
        MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run("0" * 32)
    assert not is_unreachable(rejected.value)
    assert not is_unreachable(ValueError("API request to nowhere"))


def test_writes_the_server_missed_are_spilled_in_order_and_sent_later_with_their_snapshots(
        dead_server: MlflowClient, tmp_path: Path) -> None:
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = store.create_run(store.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    tracker = Tracker(dead_server, run_id)
    tracker.log_params({"lr": 0.1})
    for step in (1, 2, 3):
        tracker.log_metrics({"train/loss": 1.0 / step}, step=step)
    model = tmp_path / "model.pt"
    model.write_text("weights at the end")
    tracker.log_artifact(model)
    model.unlink()
    model.write_text("a later model")  # replaced after the write: the snapshot keeps what was logged
    tracker.describe("done")
    tracker.finish()

    (spilled,) = (tmp_path / PENDING).glob("*/writes.json")
    writes = json.loads(spilled.read_text())["writes"]
    assert [w["op"] for w in writes] == ["log_batch"] * 4 + ["log_artifact", "log_batch", "set_terminated"]
    assert store.get_run(run_id).info.status == "RUNNING"

    assert replay_pending(tmp_path, store) == 7
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
    assert run.data.tags["mlflow.note.content"] == "done"
    history = store.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    logged = Path(store.download_artifacts(run_id, "model.pt", str(tmp_path / "down")))
    assert logged.read_text() == "weights at the end"
    assert not any((tmp_path / PENDING).iterdir())
    assert replay_pending(tmp_path, store) == 0


def test_a_failed_run_is_spilled_at_once_and_a_store_that_rejects_a_write_raises(
        dead_server: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFSUP_MLFLOW_FLUSH_SECONDS", "600")  # a finished run would wait this long
    tracker = Tracker(dead_server, "0" * 32)
    tracker.log_metrics({"train/loss": 1.0}, step=1)
    tracker.finish("FAILED")
    (spilled,) = (tmp_path / PENDING).glob("*/writes.json")
    assert json.loads(spilled.read_text())["writes"][-1] == {"op": "set_terminated", "status": "FAILED"}
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(MlflowException):  # the run is not in this store: a rejected write is an error
        replay_pending(tmp_path, store)
    assert spilled.is_file()  # and nothing was dropped
