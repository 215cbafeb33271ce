"""MLflow tracking against a real SQLite store: where it lives, what a run holds, and parallel writers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from selfsup.tracking import EXPERIMENT, Tracker, store_root, tracking_uri

ENV_VARS = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_EXPERIMENT_NAME")


def _scratch(tmp_path: Path) -> Iterator[Path]:
    """A scratch folder on tmpfs when there is one: creating MLflow's schema is ~100 migrations, each an
    fsync, which takes ~6 s on a virtual disk and ~1 s in memory. Falls back to pytest's tmp_path."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="selfsup-tracking-", dir=shm))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield from _scratch(tmp_path)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An initialised, empty MLflow database, created once and copied into each test's store root."""
    for folder in _scratch(tmp_path_factory.mktemp("template")):
        db = folder / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()
        yield db


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def _client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def test_default_store_is_in_the_current_directory(scratch: Path, empty_store: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    assert store_root() == scratch.resolve()
    assert tracking_uri() == f"sqlite:///{scratch.resolve() / 'mlflow.db'}"

    tracker = Tracker.start({"stage": "pretrain", "method": "simclr"})
    tracker.log_params({"lr": 0.3, "views.size": 32, "optim.name": "lars"})
    tracker.log_metrics({"loss": 2.5, "lr": 0.1}, step=3)
    tracker.log_metrics({"loss": 1.5}, step=7)
    tracker.log_metrics({"knn_top1": 0.9})
    tracker.set_tags({"phase": "done"})
    (scratch / "report.txt").write_text("accuracy 0.9\n")
    tracker.log_artifact(scratch / "report.txt", "reports")
    tracker.finish()

    client = _client(scratch)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name  # mlflow names runs itself when there is no DVC experiment
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.params == {"lr": "0.3", "views.size": "32", "optim.name": "lars"}
    assert run.data.metrics == {"loss": 1.5, "lr": 0.1, "knn_top1": 0.9}  # latest value of each
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss")] == [(3, 2.5), (7, 1.5)]
    assert [m.step for m in client.get_metric_history(tracker.run_id, "knn_top1")] == [0]
    tags = run.data.tags
    assert tags["stage"] == "pretrain" and tags["method"] == "simclr" and tags["phase"] == "done"
    assert "dvc.exp_name" not in tags
    assert "mlflow.source.git.commit" not in tags  # the scratch folder is no git repository

    artifact = scratch / "mlruns" / tracker.run_id / "artifacts" / "reports" / "report.txt"
    assert artifact.read_text() == "accuracy 0.9\n"
    assert run.info.artifact_uri == (scratch.resolve() / "mlruns" / tracker.run_id / "artifacts").as_uri()
    assert (scratch / "mlflow.db.lock").exists()


def test_dvc_experiment_name_names_the_run(scratch: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    monkeypatch.setenv("DVC_EXP_NAME", "swish-pole")
    tracker = Tracker.start({"stage": "pretrain"})
    explicit = Tracker.start({"stage": "evaluate"}, run_name="custom", parent_run_id=tracker.run_id)
    client = _client(scratch)
    run = client.get_run(tracker.run_id)
    assert run.info.run_name == "swish-pole"
    assert run.data.tags["dvc.exp_name"] == "swish-pole"
    child = client.get_run(explicit.run_id)
    assert child.info.run_name == "custom"
    assert child.data.tags["dvc.exp_name"] == "swish-pole"
    assert child.data.tags["mlflow.parentRunId"] == tracker.run_id
    assert child.info.experiment_id == run.info.experiment_id
    assert run.info.status == "RUNNING"  # not finished yet


def test_attach_continues_the_same_run(scratch: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    first = Tracker.start({"stage": "pretrain"})
    first.log_metrics({"loss": 3.0}, step=1)
    again = Tracker.attach(first.run_id)
    assert again.run_id == first.run_id
    again.log_metrics({"loss": 2.0}, step=2)
    again.log_params({"resumed": True})
    again.finish("FAILED")

    client = _client(scratch)
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == 1
    run = client.get_run(first.run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"resumed": "True"}
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")] == [(1, 3.0), (2, 2.0)]

    with pytest.raises(Exception, match="not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        Tracker.attach("0" * 32)


def test_failing_on_error_marks_the_run(scratch: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    tracker = Tracker.start({})
    with pytest.raises(RuntimeError), tracker.failing_on_error():
        raise RuntimeError("boom")
    assert _client(scratch).get_run(tracker.run_id).info.status == "FAILED"


def test_dvc_root_holds_the_store(scratch: Path, empty_store: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued DVC experiments run in a temporary copy: the store must stay in DVC_ROOT."""
    root = scratch / "repo"
    root.mkdir()
    shutil.copy(empty_store, root / "mlflow.db")
    workdir = tmp_path / "exps" / "tmp123"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DVC_ROOT", str(root))
    assert store_root() == root.resolve()
    assert tracking_uri() == f"sqlite:///{root.resolve() / 'mlflow.db'}"

    tracker = Tracker.start({"stage": "pretrain"})
    (workdir / "model.txt").write_text("weights")
    tracker.log_artifact(workdir / "model.txt")
    tracker.finish()
    assert (root / "mlruns" / tracker.run_id / "artifacts" / "model.txt").read_text() == "weights"
    assert sorted(p.name for p in workdir.iterdir()) == ["model.txt"]  # nothing written in the copy
    assert _client(root).get_run(tracker.run_id).info.status == "FINISHED"


def test_explicit_tracking_uri_wins(scratch: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(empty_store, scratch / "elsewhere.db")
    monkeypatch.setenv("DVC_ROOT", str(scratch / "unused"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'elsewhere.db'}")
    tracker = Tracker.start({"stage": "pretrain"})
    tracker.finish()
    assert MlflowClient(f"sqlite:///{scratch / 'elsewhere.db'}").get_run(tracker.run_id).info.status == "FINISHED"
    assert (scratch / "elsewhere.db.lock").exists()
    assert not (scratch / "unused").exists()


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    # import the store code before the start signal, so the workers race on creating the store itself
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401
    from selfsup.tracking import Tracker

    sync, name = Path(sys.argv[1]), sys.argv[2]
    (sync / f"ready-{name}").touch()
    while not (sync / "go").exists():
        time.sleep(0.005)
    tracker = Tracker.start({"worker": name})
    for step in range(30):
        tracker.log_metrics({"loss": step / 10, "worker_id": float(name)}, step=step)
    tracker.finish()
    print(tracker.run_id)
""")


def test_parallel_writers_on_a_fresh_store(scratch: Path, tmp_path: Path) -> None:
    """Two processes start together on a store that does not exist yet: both create-or-open it, start a run
    and log 30 metric batches. Neither may fail with "database is locked" and no step may be lost."""
    n_workers = 2
    sync = tmp_path / "sync"
    sync.mkdir()
    root = scratch / "repo"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["DVC_ROOT"] = str(root)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(sync), str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n_workers)]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < n_workers:
            assert all(p.poll() is None for p in procs), "a worker died before the start signal"
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        assert not (root / "mlflow.db").exists()
        (sync / "go").touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err

    run_ids = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(run_ids) == n_workers
    client = _client(root)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_id for r in runs} == run_ids
    assert sorted(r.data.tags["worker"] for r in runs) == [str(i) for i in range(n_workers)]
    for run in runs:
        assert run.info.status == "FINISHED"
        worker = float(run.data.tags["worker"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, s / 10) for s in range(30)]
        ids = client.get_metric_history(run.info.run_id, "worker_id")
        assert len(ids) == 30 and {m.value for m in ids} == {worker}


def test_a_terminated_stage_marks_its_run_killed_and_keeps_its_checkpoint(project: Path) -> None:
    """`kill` (SIGTERM) on a running pretrain unwinds like Ctrl-C: the run is KILLED, nothing half-written."""
    import signal

    from conftest import REPO, TINY_RUN, tiny_dataset, write_params

    tiny_dataset(project / "data")
    write_params(project, method="simclr", **{**TINY_RUN, "epochs": 200})
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "pretrain.py"), "--data", str(project / "data"),
                             "--out", str(project / "out"), "--checkpoints", str(project / "ck"),
                             "--tag", "figure=method_comparison", "--tag", "run=simclr-long"],
                            cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (project / "ck" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "stopped by signal" in err
    (run,) = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_runs(
        [e.experiment_id for e in MlflowClient(env["MLFLOW_TRACKING_URI"]).search_experiments()])
    assert run.info.status == "KILLED"
    assert run.info.run_name == "simclr-long" and run.data.tags["figure"] == "method_comparison"
    assert not (project / "out" / "model.pt").exists()
    assert not [p for p in (project / "ck").iterdir() if p.name.endswith(".tmp")]


def test_an_image_run_logs_its_knobs_but_not_the_video_sections() -> None:
    from selfsup.params import load_config
    from selfsup.pretrain import image_params

    params = image_params(load_config(overrides={"method": "barlow", "lambda": 0.05}))
    assert params["method"] == "barlow" and params["lambda"] == 0.05 and "views.size" in params
    assert not [k for k in params if k.split(".")[0] in ("video", "elo", "zipf", "search")]


def test_a_run_is_named_after_what_it_trained_and_marked_as_model_training(scratch: Path, empty_store: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    subprocess.run(["git", "init", "-q"], cwd=scratch, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=scratch, check=True)
    plain = Tracker.start({"stage": "pretrain"}, default_name="simclr-digits-bg-80ep")
    monkeypatch.setenv("DVC_EXP_NAME", "barlow-5e-3")
    in_experiment = Tracker.start({"stage": "pretrain"}, default_name="barlow-digits-bg-80ep")
    client = _client(scratch)
    assert client.get_run(plain.run_id).info.run_name == "simclr-digits-bg-80ep"
    assert client.get_run(in_experiment.run_id).info.run_name == "barlow-5e-3"
    tags = client.get_run(plain.run_id).data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=scratch, capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head and tags["git.dirty"] == "false"
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.headline"])  # ?viewStateShareKey=headline
    columns = set(view["selectedColumns"])
    assert {"metrics.`image/linear_top1`", "metrics.`video/knn_top1`", "params.`method`"} <= columns


def test_an_evaluation_lands_in_its_namespace_with_the_headline_as_description(scratch: Path, empty_store: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from selfsup.eval.evaluate import summary
    from selfsup.tracking import log_figures, record_evaluation

    monkeypatch.chdir(scratch)
    shutil.copy(empty_store, scratch / "mlflow.db")
    tracker = Tracker.start({"stage": "pretrain"})
    (scratch / "run.json").write_text(json.dumps({"run_id": tracker.run_id}))
    metrics = {"linear_top1": 0.432, "knn_top1": 0.402, "random_linear_top1": 0.152, "random_knn_top1": 0.176,
               "pixels_linear_top1": 0.147, "pixels_knn_top1": 0.199, "chance_top1": 0.1}
    (scratch / "metrics.json").write_text(json.dumps(metrics))
    record_evaluation(scratch / "run.json", metrics, "image", [scratch / "metrics.json"], summary(metrics))
    run = _client(scratch).get_run(tracker.run_id)
    assert run.data.metrics["image/linear_top1"] == 0.432 and "linear_top1" not in run.data.metrics
    from selfsup.tracking import HEADLINE_COLUMNS

    shown = [c.split("`")[1] for c in HEADLINE_COLUMNS if c.startswith("metrics.`image/")]
    assert shown and all(name in run.data.metrics for name in shown)  # the headline view shows logged names
    assert run.data.tags["mlflow.note.content"] == (
        "linear probe 43.2%, kNN 40.2% on the test split; the same network randomly initialised 15.2% / 17.6%; "
        "raw pixels 14.7% / 19.9%; chance 10.0%")
    assert (scratch / "mlruns" / tracker.run_id / "artifacts" / "evaluate" / "metrics.json").is_file()
    (scratch / "fig.png").write_bytes(b"png")
    assert log_figures(scratch / "run.json", [scratch / "fig.png"])
    assert (scratch / "mlruns" / tracker.run_id / "artifacts" / "figures" / "fig.png").is_file()
    (scratch / "other.json").write_text(json.dumps({"run_id": "0" * 32}))  # a run of another store
    assert not log_figures(scratch / "other.json", [scratch / "fig.png"])


def test_a_copied_repository_keeps_its_artifacts_inside_the_copy(project: Path, tmp_path: Path) -> None:
    """A stage run in a copy of a repository (mlflow.db included) writes its artifacts into the copy;
    the experiment that points at the original folder is kept, renamed."""
    from conftest import REPO, TINY_RUN, tiny_dataset, write_params

    tiny_dataset(project / "data")
    write_params(project, method="simclr", **{**TINY_RUN, "epochs": 1})
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}

    def pretrain(root: Path) -> None:
        subprocess.run([sys.executable, str(REPO / "stages" / "pretrain.py"), "--data", "data", "--out", "out",
                        "--checkpoints", "ck"], cwd=root, env=env, check=True, capture_output=True)

    pretrain(project)
    copy = tmp_path / "moved"
    shutil.copytree(project, copy)
    shutil.rmtree(copy / "out")
    shutil.rmtree(copy / "ck")
    pretrain(copy)
    client = _client(copy)
    experiments = {e.name: e for e in client.search_experiments()}
    here = experiments[EXPERIMENT]
    assert here.artifact_location == (copy.resolve() / "mlruns").as_uri()
    assert f"{EXPERIMENT} (artifacts in {(project.resolve() / 'mlruns')})" in experiments
    (run,) = client.search_runs([here.experiment_id])
    assert (copy / "mlruns" / run.info.run_id / "artifacts" / "model.pt").is_file()
    assert run.info.run_name == "simclr-digits-bg-1ep"
    assert sorted(p.name for p in (project / "mlruns").iterdir()) == sorted(
        p.name for p in (copy / "mlruns").iterdir() if p.name != run.info.run_id)  # nothing new in the original
