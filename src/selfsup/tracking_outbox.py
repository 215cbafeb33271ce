"""Writes to an MLflow tracking server that did not reach it: kept in order, retried, and never lost.

A stage checks the server before it opens its run (``tracking.check_server``). When the server goes away
in the middle of a run, training goes on: each write that fails because the server does not answer joins
an in-memory outbox, in order, with a snapshot (hard link, else copy) of any artifact file, and the outbox
is retried every ``SELFSUP_MLFLOW_RETRY_SECONDS`` (30) before the next write. ``finish`` keeps retrying for
``SELFSUP_MLFLOW_FLUSH_SECONDS`` (60; none for a failed or interrupted run); if the server is still away
the outbox is spilled to ``.mlflow-pending/`` in the repository and the stage ends normally. The next
stage that reaches the server (or ``python -m selfsup.tracking_outbox``) sends the spilled writes first,
so the run ends up holding everything it would have held.

MLflow's own HTTP retries (7 with backoff, minutes) are shortened for stages (``MLFLOW_HTTP_REQUEST_*``,
unless set): a lost server costs a write about 3 s, after which the outbox takes over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from selfsup.io import atomic_write_text

log = logging.getLogger(__name__)
PENDING = ".mlflow-pending"
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# MLflow error codes that say the request itself was wrong: raised, never buffered.
CLIENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
                 "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_STATE", "ENDPOINT_NOT_FOUND"}


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def shorten_http_retries() -> None:
    """MLflow's HTTP client retries a lost server for minutes; a stage buffers instead (unless set)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server did not answer (connection refused, timeout, 5xx after retries),
    as opposed to a request the server rejected."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, RestException):  # the server answered, with an error of its own
        return exc.error_code == "TEMPORARILY_UNAVAILABLE"
    if isinstance(exc, MlflowException):
        return exc.error_code not in CLIENT_ERRORS and "API request to" in str(exc)
    return False


def apply(client: Any, run_id: str, write: dict[str, Any], files: Path | None = None) -> None:
    """Send one recorded write (see :meth:`Outbox.add`) to ``client``."""
    from mlflow.entities import Metric, Param, RunTag

    op = write["op"]
    if op == "log_batch":
        client.log_batch(run_id, metrics=[Metric(*m) for m in write.get("metrics", [])],
                         params=[Param(*p) for p in write.get("params", [])],
                         tags=[RunTag(*t) for t in write.get("tags", [])])
    elif op == "log_artifact":
        path = Path(write["path"]) if files is None else files / write["path"]
        client.log_artifact(run_id, str(path), write.get("artifact_path"))
    elif op == "set_terminated":
        client.set_terminated(run_id, write["status"])
    else:
        raise ValueError(f"unknown MLflow write {op!r}")


class Outbox:
    """The writes of one run that have not reached the server, in order."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.writes: list[dict[str, Any]] = []
        self.files: Path | None = None
        self.next_try = 0.0

    def __bool__(self) -> bool:
        return bool(self.writes)

    def add(self, write: dict[str, Any]) -> None:
        """Keep ``write``; an artifact's file is snapshotted now (it may be replaced before it is sent)."""
        if not self.writes:
            self.next_try = time.monotonic() + _seconds("SELFSUP_MLFLOW_RETRY_SECONDS", 30)
        if write["op"] == "log_artifact":
            if self.files is None:
                self.files = self.root / PENDING / f"{time.time_ns()}-{self.run_id}" / "files"
                self.files.mkdir(parents=True)
            source = Path(write["path"])
            name = f"{len(self.writes):06d}/{source.name}"
            (self.files / name).parent.mkdir()
            try:
                os.link(source, self.files / name)
            except OSError:
                shutil.copy2(source, self.files / name)
            write = {**write, "path": name}
        self.writes.append(write)

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def flush(self, send: Callable[[dict[str, Any], Path | None], None]) -> bool:
        """Send the writes in order until one fails because the server is away; True when all were sent."""
        while self.writes:
            try:
                send(self.writes[0], self.files)
            except Exception as exc:  # noqa: BLE001 - anything but a lost server is re-raised
                if not is_unreachable(exc):
                    raise
                self.next_try = time.monotonic() + _seconds("SELFSUP_MLFLOW_RETRY_SECONDS", 30)
                return False
            self.writes.pop(0)
        if self.files is not None:
            shutil.rmtree(self.files.parent, ignore_errors=True)
            self.files = None
        return True

    def drain(self, send: Callable[[dict[str, Any], Path | None], None], patience: float) -> bool:
        """:meth:`flush`, retrying for ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while not self.flush(send):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
        return True

    def spill(self) -> Path:
        """Write the remaining writes to ``.mlflow-pending/<time>-<run id>/writes.json``; returns the folder."""
        folder = self.root / PENDING / f"{time.time_ns()}-{self.run_id}" if self.files is None else self.files.parent
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "writes.json", json.dumps({"run_id": self.run_id, "writes": self.writes}))
        self.writes, self.files = [], None
        return folder


def replay_pending(root: Path, client: Any) -> int:
    """Send the writes spilled under ``root/.mlflow-pending`` (oldest first) to ``client``; a folder is
    removed once all its writes are sent. Returns how many writes were sent; stops at a lost server."""
    pending = Path(root) / PENDING
    if not pending.is_dir():
        return 0
    sent = 0
    with FileLock(str(pending) + ".lock"):
        for folder in sorted(p for p in pending.iterdir() if (p / "writes.json").is_file()):
            record = json.loads((folder / "writes.json").read_text())
            writes = record["writes"]
            while writes:
                try:
                    apply(client, record["run_id"], writes[0], folder / "files")
                except Exception as exc:  # noqa: BLE001 - anything but a lost server is re-raised
                    atomic_write_text(folder / "writes.json", json.dumps(record))  # what was sent is not resent
                    if not is_unreachable(exc):
                        raise
                    log.warning("MLflow server still unreachable; %d writes of run %s stay in %s", len(writes),
                                record["run_id"], folder)
                    return sent
                writes.pop(0)
                sent += 1
            shutil.rmtree(folder)
            log.info("sent the MLflow writes of run %s that were kept in %s", record["run_id"], folder)
    return sent


def main() -> None:
    """Send the spilled writes of this repository's ``.mlflow-pending`` to ``MLFLOW_TRACKING_URI``."""
    from selfsup.tracking import Tracker, store_root

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    Tracker._client()  # replays on connect
    left = sum(1 for p in (store_root() / PENDING).glob("*/writes.json")) if (store_root() / PENDING).is_dir() else 0
    raise SystemExit(1 if left else 0)


if __name__ == "__main__":
    main()
