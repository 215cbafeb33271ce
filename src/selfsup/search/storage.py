"""Where a search study lives, and what keeps it whole when workers on other machines die.

- **Journal file** (default): ``<study_dir>/study.journal``, Optuna's journal storage, for workers on
  one machine. A trial left RUNNING by a dead process of this host is failed and retried by
  :func:`~selfsup.search.study.recover_interrupted`.
- **RDB URL** (``search.storage``; PostgreSQL for several machines, sqlite for one): Optuna's
  ``RDBStorage`` with heartbeats. A worker records a heartbeat every ``search.heartbeat_interval``
  seconds while its trial runs (:func:`heartbeat`); a RUNNING trial whose heartbeat is older than
  ``search.grace_period`` (its worker died, wherever it ran) is failed by any worker before it asks
  for a trial, and Optuna's retry callback (``RetryHeartbeatStaleTrialCallback``) queues its params again (at most
  ``search.max_retry`` times).

The stopping rule ("ask only while fewer than ``n_trials`` trials are complete or running") is a
check followed by an ask; :func:`study_lock` makes the pair atomic across workers: a PostgreSQL
advisory lock keyed by the study's name when the study is in PostgreSQL (workers on any machine),
a file lock in the study folder otherwise (workers on this machine).

A storage that cannot be reached raises :class:`StorageError`, naming the URL (password hidden) and
the fix; the study in the database is left as it was, and rerunning the stage continues it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna

from selfsup.config.video import SearchConfig
from selfsup.errors import ConfigError, SelfSupError

JOURNAL = "study.journal"


class StorageError(SelfSupError):
    """The study's database cannot be reached (stopped server, lost network)."""


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgresql(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme.split("+")[0] in ("postgresql", "postgres")


def _database_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return (OperationalError, DBAPIError)


@contextlib.contextmanager
def storage_errors(search: SearchConfig) -> Iterator[None]:
    """Turn a lost database connection inside the block into a :class:`StorageError` naming the storage."""
    if not search.storage:
        yield
        return
    try:
        yield
    except _database_errors() as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StorageError(f"the search storage {redact(search.storage)} cannot be reached ({reason}). Start the "
                           f"database again and rerun the stage: the study continues where it stopped (a trial "
                           f"that was running is failed and its params run again)") from exc


def open_storage(search: SearchConfig, study_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage (see the module docstring); a URL that cannot be opened is a ConfigError naming the key,
    a PostgreSQL server that does not answer a StorageError."""
    if search.storage:
        lost = storage_errors(search) if is_postgresql(search.storage) else contextlib.nullcontext()
        try:
            with lost, warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: since v2.9
                # Optuna 4.9 renamed RetryFailedTrialCallback; the old name warns and goes in v6
                retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                                optuna.storages.RetryFailedTrialCallback)(max_retry=search.max_retry)
                return optuna.storages.RDBStorage(search.storage, heartbeat_interval=search.heartbeat_interval,
                                                  grace_period=search.grace_period,
                                                  heartbeat_stale_trial_callback=retry)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error means the same thing to the user
            raise ConfigError(f"search.storage={redact(search.storage)!r} cannot be opened ({type(exc).__name__}: "
                              f"{exc}); give an RDB URL such as sqlite:///search.db or "
                              f"postgresql://user@host/db, or null for a journal file") from exc
    from optuna.storages.journal import JournalFileBackend

    study_dir.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` from the study's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, search: SearchConfig, study_dir: Path,
               name: str) -> Iterator[None]:
    """Exclusive access to the study's stopping rule for the block, for every worker that can reach the study."""
    if is_postgresql(search.storage) and isinstance(storage, optuna.storages.RDBStorage):
        from sqlalchemy import text

        with storage_errors(search), storage.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _advisory_key(name)})
            try:
                yield
            finally:
                with contextlib.suppress(*_database_errors()):
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _advisory_key(name)})
        return
    from filelock import FileLock

    study_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(study_dir / "study.lock")):
        yield


def fail_stale(study: optuna.Study) -> None:
    """Fail trials whose heartbeat stopped (their workers died, on any machine); Optuna's retry callback queues
    their params again. Nothing for storages without heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat now and every heartbeat interval while the block runs (RDB storages)."""
    interval = storage.get_heartbeat_interval() if isinstance(storage, optuna.storages.RDBStorage) else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(*_database_errors()):
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def reachable(search: SearchConfig) -> bool:
    """Whether the RDB storage answers a trivial query now (True for journal storages)."""
    if not search.storage:
        return True
    from sqlalchemy import create_engine, text

    engine = create_engine(search.storage)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except _database_errors():
        return False
    finally:
        engine.dispose()
