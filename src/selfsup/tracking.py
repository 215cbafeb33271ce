"""MLflow: the one place that names runs and logs params, metrics and artifacts.

The store is ``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/mlruns`` unless
``MLFLOW_TRACKING_URI`` is set. ``<root>`` is ``DVC_ROOT`` when DVC sets it (queued experiments
run in a temporary copy under ``.dvc/tmp/exps/`` that is discarded afterwards, so the store must
live in the original repository) and the current directory otherwise. A run is named by its
``run`` tag (the paper pipeline's run folders), else the DVC experiment name (``DVC_EXP_NAME``),
else after what it trained (``simclr-digits-bg-80ep``). Runs carry the git commit and the stage
script as their source; evaluation adds its headline numbers as the run's description.

The experiment is marked as model training (``mlflow.experimentKind``), so the MLflow UI opens it
on the runs table rather than on GenAI traces, and carries a shared view of that table, ``headline``
(``?viewStateShareKey=headline``), whose columns are the image and video accuracies, the method and
the DVC experiment. Its artifacts live in ``<root>/mlruns``; when the
repository was moved or copied (the experiment's artifact location is another folder), the old
experiment is renamed and a new one is started, so no run writes into the original folder.

With a tracking server, a write the server does not answer is kept and retried, and spilled to
``.mlflow-pending/`` if the run ends before the server is back (``selfsup.tracking_outbox``); training never
stops for it.

SQLite allows one writer at a time: every write goes through a file lock next to the database
and is retried if SQLite still reports the database as locked, so parallel queue workers
(``dvc queue start -j 2``) never fail with "database is locked".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from selfsup.tracking_outbox import Outbox, apply, is_unreachable, replay_pending, shorten_http_retries

log = logging.getLogger(__name__)
T = TypeVar("T")
EXPERIMENT = "selfsup"
VIEW = "headline"  # open http://127.0.0.1:5000/#/experiments/<id>/runs?viewStateShareKey=headline
HEADLINE_COLUMNS = ["metrics.`image/linear_top1`", "metrics.`image/knn_top1`", "metrics.`image/random_linear_top1`",
                    "metrics.`video/linear_top1`", "metrics.`video/knn_top1`", "params.`method`", "params.`epochs`",
                    "tags.`dataset`", "tags.`dvc.exp_name`"]
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",  # the UI's model-training view, not GenAI traces
    # A shared view of the runs table (MLflow's "Share" button stores the same): the headline columns.
    f"mlflow.sharedViewState.{VIEW}": json.dumps({"selectedColumns": HEADLINE_COLUMNS,
                                                  "orderByKey": "attributes.start_time", "orderByAsc": False}),
}
DESCRIPTION = "mlflow.note.content"


def store_root() -> Path:
    """The repository that owns the MLflow store (``DVC_ROOT`` under ``dvc exp run --queue``)."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def check_server() -> None:
    """With an HTTP tracking URI, fail at once, before any training, when the server does not answer its
    ``/health`` endpoint: one line naming the URI and the ways on. Nothing for the sqlite default."""
    import urllib.error
    import urllib.request

    from selfsup.errors import TrackingError

    uri = tracking_uri()
    if not is_server(uri):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise TrackingError(f"the MLflow tracking server MLFLOW_TRACKING_URI={uri} does not answer ({reason}); start it "
                        f"(docs/teams.md), or unset MLFLOW_TRACKING_URI to record into the sqlite default "
                        f"{store_root() / 'mlflow.db'}, or pass --no-mlflow where the stage has it")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _lock_path() -> Path | None:
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):] + ".lock")
    return None


def dvc_experiment_name() -> str | None:
    return os.environ.get("DVC_EXP_NAME") or None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=store_root())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_tags() -> dict[str, str]:
    """The code a run came from: the git commit (with ``git.dirty`` when the tree has changes) and the
    script that was run, as MLflow's source tags."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": Path(sys.argv[0]).name or "python"}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower()
    return tags


def read_run_id(run_json: Path) -> str | None:
    """The MLflow run id a stage wrote to ``run.json`` (empty when it ran without tracking)."""
    data = json.loads(Path(run_json).read_text())
    return data.get("run_id") or None


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and ``kill`` wait until a store write is done: a SQLite transaction interrupted half-way
    would keep the database locked, and the run could not then be marked KILLED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Tracker:
    """Writes to one MLflow run. Create with :meth:`start` or :meth:`attach`."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.outbox = Outbox(store_root(), run_id)

    # -- locking -------------------------------------------------------------------------------
    @staticmethod
    def _guarded(fn: Callable[[], T], attempts: int = 20) -> T:
        lock_path = _lock_path()
        lock = FileLock(str(lock_path)) if lock_path else contextlib.nullcontext()
        for attempt in range(attempts):
            try:
                with _signals_deferred(), lock:
                    return fn()
            except Exception as exc:  # noqa: BLE001 - only lock errors are retried
                if "database is locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _client() -> Any:
        from mlflow.tracking import MlflowClient

        check_server()
        client = Tracker._guarded(lambda: MlflowClient(tracking_uri()))
        if is_server(tracking_uri()):
            shorten_http_retries()
            replay_pending(store_root(), client)
        return client

    @classmethod
    def _experiment_id(cls, client: Any) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)

        artifacts = (store_root() / "mlruns").as_uri()
        own_store = "MLFLOW_TRACKING_URI" not in os.environ

        def get_or_create() -> str:
            exp = client.get_experiment_by_name(name)
            if exp is not None and own_store and exp.artifact_location != artifacts:
                moved = f"{name} (artifacts in {exp.artifact_location.removeprefix('file://')})"
                log.warning("MLflow experiment %r keeps its artifacts in %s, not in this repository; it is renamed "
                            "%r and a new one is started here", name, exp.artifact_location, moved)
                client.rename_experiment(exp.experiment_id, moved)
                exp = None
            if exp is None:  # a tracking server keeps the artifacts where it was told to (--artifacts-destination)
                location = None if is_server(tracking_uri()) else artifacts
                return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            for key, value in EXPERIMENT_TAGS.items():
                if key not in exp.tags:
                    client.set_experiment_tag(exp.experiment_id, key, value)
            return exp.experiment_id

        return cls._guarded(get_or_create)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def start(cls, tags: dict[str, str], run_name: str | None = None, parent_run_id: str | None = None,
              default_name: str | None = None) -> Tracker:
        """Open a new run in the ``selfsup`` experiment, named ``run_name``, else after the DVC experiment,
        else ``default_name`` (what it trains, e.g. ``simclr-digits-bg-80ep``)."""
        client = cls._client()
        exp_id = cls._experiment_id(client)
        exp_name = dvc_experiment_name()
        all_tags = {**tags, **({"dvc.exp_name": exp_name} if exp_name else {}), **source_tags()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        name = run_name or exp_name or default_name
        run = cls._guarded(lambda: client.create_run(exp_id, run_name=name, tags=all_tags))
        return cls(client, run.info.run_id)

    @classmethod
    def attach(cls, run_id: str) -> Tracker:
        """Continue writing to an existing run (a resumed pretrain, or evaluate after pretrain)."""
        client = cls._client()
        cls._guarded(lambda: client.get_run(run_id))
        return cls(client, run_id)

    @classmethod
    def find(cls, run_id: str, what: str) -> Tracker | None:
        """:meth:`attach` to ``run_id``, or None with a warning when this store does not hold it: the id came
        with records or study files made on another machine (git, ``dvc pull``), or the store was reset.
        ``what`` names the run and what the caller does instead ("the study's run; a new one is started")."""
        from mlflow.exceptions import MlflowException

        try:
            return cls.attach(run_id)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")) and "not found" not in str(exc):
                raise
            log.warning("MLflow run %s is not in %s: %s", run_id, tracking_uri(), what)
            return None

    # -- logging -------------------------------------------------------------------------------
    def _send(self, write: dict[str, Any]) -> None:
        """Send ``write`` after any kept ones; keep it instead while the server is away (see Outbox)."""
        if self.outbox and not (self.outbox.due() and self._flush()):
            self.outbox.add(write)
            return
        try:
            self._apply(write)
        except Exception as exc:  # noqa: BLE001 - anything but a lost server is re-raised
            if not (is_server(tracking_uri()) and is_unreachable(exc)):
                raise
            log.warning("MLflow server %s unreachable (%s); training goes on, and this run's writes are kept and "
                        "retried", tracking_uri(), str(exc).splitlines()[0][:200])
            self.outbox.add(write)

    def _flush(self, patience: float = 0.0) -> bool:
        """Send the kept writes, retrying for ``patience`` seconds; True (and a log line) once all are sent."""
        kept = len(self.outbox.writes)
        if not self.outbox.drain(self._apply, patience):
            return False
        log.info("MLflow server %s is back; the run's %d kept writes were sent", tracking_uri(), kept)
        return True

    def _apply(self, write: dict[str, Any], files: Path | None = None) -> None:
        self._guarded(lambda: apply(self.client, self.run_id, write, files))

    def log_params(self, params: dict[str, Any]) -> None:
        items = [[k, str(v)] for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self._send({"op": "log_batch", "params": items[i : i + 100]})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self._send({"op": "log_batch", "metrics": [[k, float(v), now, step or 0] for k, v in metrics.items()]})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send({"op": "log_batch", "tags": [[k, str(v)] for k, v in tags.items()]})

    def describe(self, text: str) -> None:
        """Set the run's description (shown on its page and as a column of the runs table)."""
        self.set_tags({DESCRIPTION: text})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._send({"op": "log_artifact", "path": str(path), "artifact_path": artifact_path})

    def finish(self, status: str = "FINISHED") -> None:
        """End the run. Writes kept while the server was away are sent first, retried for
        ``SELFSUP_MLFLOW_FLUSH_SECONDS`` (a finished run only), and else spilled to ``.mlflow-pending/``."""
        self._send({"op": "set_terminated", "status": status})
        if not self.outbox:
            return
        patience = float(os.environ.get("SELFSUP_MLFLOW_FLUSH_SECONDS", 60)) if status == "FINISHED" else 0.0
        if self._flush(patience):
            return
        folder = self.outbox.spill()
        log.warning("MLflow server %s still unreachable: the run's remaining writes are kept in %s and are sent by "
                    "the next stage that reaches the server (or: python -m selfsup.tracking_outbox)", tracking_uri(),
                    folder)

    @contextlib.contextmanager
    def failing_on_error(self) -> Iterator[Tracker]:
        """Mark the run FAILED if the body raises; KILLED on Ctrl-C."""
        try:
            yield self
        except KeyboardInterrupt:
            self.finish("KILLED")
            raise
        except BaseException:
            self.finish("FAILED")
            raise


def _recorded_run(run_json: Path) -> Tracker | None:
    """The run whose id a stage wrote to ``run_json``; None when it ran untracked or this store lacks it."""
    run_id = read_run_id(run_json)
    return Tracker.find(run_id, f"the run of {run_json}; it is not updated") if run_id else None


def record_evaluation(run_json: Path, metrics: dict[str, float], namespace: str, artifacts: list[Path],
                      description: str) -> None:
    """Add an evaluation to the run that trained the model (its id in ``run_json``): metrics under
    ``<namespace>/`` (``image`` or ``video``, so the runs table never mixes datasets), the evaluation's
    files, and its headline numbers as the run's description. Nothing when the run was not tracked."""
    tracker = _recorded_run(run_json)
    if tracker is None:
        return
    tracker.log_metrics({f"{namespace}/{k}": v for k, v in metrics.items()})
    for path in artifacts:
        tracker.log_artifact(path, "evaluate")
    tracker.describe(description)


def log_artifacts(run_json: Path, paths: list[Path], folder: str) -> bool:
    """Log files to the run in ``run_json`` under ``folder/``; False (with a warning) when that run is not
    in this store, e.g. on a fresh clone whose records came with git but whose store did not."""
    tracker = _recorded_run(run_json) if Path(run_json).is_file() else None
    if tracker is None:
        return False
    for path in paths:
        tracker.log_artifact(path, folder)
    return True


def log_figures(run_json: Path, paths: list[Path]) -> bool:
    """Log figures to the run in ``run_json`` under ``figures/`` (see :func:`log_artifacts`)."""
    return log_artifacts(run_json, paths, "figures")
