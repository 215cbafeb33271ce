"""MLflow: the one place that names runs and logs params, metrics and artifacts.

The store is ``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/mlruns`` unless
``MLFLOW_TRACKING_URI`` is set. ``<root>`` is ``DVC_ROOT`` when DVC sets it (queued experiments
run in a temporary copy under ``.dvc/tmp/exps/`` that is discarded afterwards, so the store must
live in the original repository) and the current directory otherwise. The run name is the DVC
experiment name (``DVC_EXP_NAME``) when there is one.

SQLite allows one writer at a time: every write goes through a file lock next to the database
and is retried if SQLite still reports the database as locked, so parallel queue workers
(``dvc queue start -j 2``) never fail with "database is locked".
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

log = logging.getLogger(__name__)
T = TypeVar("T")
EXPERIMENT = "selfsup"


def store_root() -> Path:
    """The repository that owns the MLflow store (``DVC_ROOT`` under ``dvc exp run --queue``)."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def _lock_path() -> Path | None:
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):] + ".lock")
    return None


def dvc_experiment_name() -> str | None:
    return os.environ.get("DVC_EXP_NAME") or None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=store_root())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Tracker:
    """Writes to one MLflow run. Create with :meth:`start` or :meth:`attach`."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    # -- locking -------------------------------------------------------------------------------
    @staticmethod
    def _guarded(fn: Callable[[], T], attempts: int = 20) -> T:
        lock_path = _lock_path()
        lock = FileLock(str(lock_path)) if lock_path else contextlib.nullcontext()
        for attempt in range(attempts):
            try:
                with lock:
                    return fn()
            except Exception as exc:  # noqa: BLE001 - only lock errors are retried
                if "database is locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _client() -> Any:
        from mlflow.tracking import MlflowClient

        return Tracker._guarded(lambda: MlflowClient(tracking_uri()))

    @classmethod
    def _experiment_id(cls, client: Any) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)

        def get_or_create() -> str:
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            artifacts = (store_root() / "mlruns").as_uri()
            return client.create_experiment(name, artifact_location=artifacts)

        return cls._guarded(get_or_create)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def start(cls, tags: dict[str, str], run_name: str | None = None, parent_run_id: str | None = None) -> Tracker:
        """Open a new run in the ``selfsup`` experiment, named after the DVC experiment if any."""
        client = cls._client()
        exp_id = cls._experiment_id(client)
        exp_name = dvc_experiment_name()
        all_tags = {**tags, **({"dvc.exp_name": exp_name} if exp_name else {})}
        commit = _git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = cls._guarded(lambda: client.create_run(exp_id, run_name=run_name or exp_name, tags=all_tags))
        return cls(client, run.info.run_id)

    @classmethod
    def attach(cls, run_id: str) -> Tracker:
        """Continue writing to an existing run (a resumed pretrain, or evaluate after pretrain)."""
        client = cls._client()
        cls._guarded(lambda: client.get_run(run_id))
        return cls(client, run_id)

    # -- logging -------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self._guarded(lambda batch=items[i : i + 100]: self.client.log_batch(self.run_id, params=batch))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._guarded(lambda: self.client.log_batch(self.run_id, metrics=batch))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._guarded(lambda: self.client.log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._guarded(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self._guarded(lambda: self.client.set_terminated(self.run_id, status))

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
