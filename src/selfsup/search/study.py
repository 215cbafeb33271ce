"""The search study: sampler, storage, workers, resumption, and what the stage writes.

The study lives in ``<study_dir>/study.journal`` (Optuna's journal file storage) unless
``search.storage`` names an RDB URL that several machines share (:mod:`selfsup.search.storage`).
Trials are run with Optuna's ask/tell interface so the stopping rule is exact: a worker asks for a
trial only while fewer than ``search.n_trials`` trials are complete, running or queued, and the
check and the ask happen under one lock (a PostgreSQL advisory lock for a study in PostgreSQL, a
file lock otherwise), so parallel workers never overshoot. Each trial records the host and process
that runs it; a trial left RUNNING by a process of this host that no longer exists (an interrupted
search) is marked FAIL when the search starts again and its params are queued once more, and in an
RDB storage a trial whose heartbeat stopped (its worker died on any machine) is failed and queued
again by whichever worker asks next, so no trial is lost and none is counted twice. Every trial is
one nested MLflow run under the search's parent run.

What a trial computes is an ``Objective``: a callable taking the trial's resolved config and the
data folder and returning a ``TrialResult``. The stage uses ``objectives.run_trial`` (a short
training scored by Zipf-KL); tests pass a cheap analytic function through the same code path.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from selfsup.config import Config
from selfsup.config.video import SearchConfig
from selfsup.errors import ConfigError, TrainingError
from selfsup.io import atomic_write_text, write_json
from selfsup.search.space import Dimension, check_space, nested, parse_space, trial_config
from selfsup.search.storage import (
    StorageError,
    fail_stale,
    heartbeat,
    open_storage,
    reachable,
    redact,
    storage_errors,
    study_lock,
)

if TYPE_CHECKING:
    from selfsup.search.objectives import TrialResult

log = logging.getLogger(__name__)
HOST = socket.gethostname()

Objective = Callable[[Config, Path], "TrialResult"]
"""What one trial computes from its config and the data folder; lower ``TrialResult.fitness`` is better."""


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once every grid point has been tried.

    That call is only allowed inside ``Study.optimize``; under ask/tell it raises RuntimeError at the
    ``tell`` of the last grid point. The study ends by ``search.n_trials`` instead, which
    ``run_search`` keeps within the grid's size.
    """

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def make_sampler(search: SearchConfig, dims: list[Dimension], worker: int = 0,
                 resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler ``search.sampler`` names, seeded per worker and per resumption.

    Workers draw from different streams, and a resumed study (``resumed_at`` trials already in it)
    does not replay the draws its first session made.
    """
    seed = (search.seed * 1_000_003 + resumed_at * 1_009 + worker) % 2**32
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(sigma0=search.sigma, popsize=search.population, seed=seed,
                                            n_startup_trials=0, warn_independent_sampling=False)
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if search.sampler == "grid":
        return _GridSampler({d.name: d.grid(search.grid_points) for d in dims}, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by dead processes of this host as FAIL and queue their params again."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
        if host != HOST or pid is None or _alive(int(pid)):
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            _finish_mlflow(run_id, "KILLED")
        recovered.append(trial.number)
    if recovered:
        log.warning("trials %s were interrupted; their params are queued again", recovered)
    return recovered


def _finish_mlflow(run_id: str, status: str) -> None:
    from selfsup.tracking import Tracker

    tracker = Tracker.find(run_id, "an interrupted trial's run; it is not marked finished")
    if tracker is not None:
        tracker.finish(status)


def _next_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, search: SearchConfig,
                dims: list[Dimension], study_dir: Path, name: str) -> tuple[optuna.Trial, dict[str, float]] | None:
    """Under the study lock: fail trials whose workers died, then stop if the study has its trials, else ask for
    one with all its params."""
    with study_lock(storage, search, study_dir, name):
        fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        busy = sum(t.state in (TrialState.COMPLETE, TrialState.RUNNING) for t in trials)
        if not waiting and busy >= search.n_trials:
            return None
        with warnings.catch_warnings():  # heartbeats are recorded by this module's own thread, not by optimize()
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
            trial = study.ask()
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        params = {d.name: trial.suggest_float(d.name, d.low, d.high, log=d.log) for d in dims}
        return trial, params


def _parent_run(study_dir: Path, name: str, cfg: Config, track: bool) -> str | None:
    """The study's MLflow run, created once and reused when the search resumes."""
    if not track:
        return None
    import json

    from selfsup.tracking import Tracker

    path = study_dir / f"{name}.mlflow.json"
    if path.is_file():
        run_id = json.loads(path.read_text())["run_id"]
        if Tracker.find(run_id, "the study's run; a new one is started") is not None:
            return run_id
    tracker = Tracker.start({"stage": "search", "search.target": cfg.search.target, "study": name,
                             "search.sampler": cfg.search.sampler, "figure": "search"},
                            default_name=f"search-{cfg.search.sampler}-{cfg.search.n_trials}trials")
    tracker.log_params({"study": name, **{k: v for k, v in cfg.flat().items() if k.startswith("search.")}})
    write_json(path, {"run_id": tracker.run_id})
    return tracker.run_id


def worker_loop(base: dict, data_dir: Path, study_dir: Path, name: str, worker: int,
                parent_run_id: str | None, threads: int = 0, objective: Objective | None = None) -> int:
    """Ask, train, tell until the study has its trials; returns how many trials this worker ran.

    ``base`` is the search stage's resolved params; a trial's config is it with the trial's values
    on top. ``objective`` (default ``objectives.run_trial``) computes each trial's result.
    """
    import torch

    if objective is None:
        from selfsup.search.objectives import run_trial as objective
    if threads:
        torch.set_num_threads(threads)
    search = trial_config(base, {}).search
    dims = parse_space(search)
    storage = open_storage(search, study_dir)
    with storage_errors(search):
        study = optuna.load_study(study_name=name, storage=storage)
        study.sampler = make_sampler(search, dims, worker, len(study.trials))
        return _work(study, storage, base, data_dir, study_dir, name, search, dims, parent_run_id, objective)


def _work(study: optuna.Study, storage: optuna.storages.BaseStorage, base: dict, data_dir: Path, study_dir: Path,
          name: str, search: SearchConfig, dims: list[Dimension], parent_run_id: str | None,
          objective: Objective) -> int:
    from selfsup.tracking import Tracker

    ran = failures = 0
    while (asked := _next_trial(study, storage, search, dims, study_dir, name)) is not None:
        trial, params = asked
        tracker = None
        if parent_run_id:
            tracker = Tracker.start({"stage": "search-trial", "trial": str(trial.number), "figure": "search",
                                     "search.sampler": search.sampler, "search.target": search.target},
                                    run_name=f"trial-{trial.number}", parent_run_id=parent_run_id)
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
            tracker.log_params(params)
        try:
            with heartbeat(storage, trial._trial_id):
                result = objective(trial_config(base, params), data_dir)
        except TrainingError as exc:
            log.warning("trial %d failed: %s", trial.number, exc)
            study.tell(trial, state=TrialState.FAIL)
            if tracker:
                tracker.finish("FAILED")
            failures += 1
            if failures > search.n_trials:
                raise TrainingError(f"{failures} search trials failed; see the warnings above") from exc
            continue
        except BaseException:
            if tracker:
                tracker.finish("KILLED")
            raise
        for key, value in result.metrics.items():
            trial.set_user_attr(key, value)
        study.tell(trial, result.fitness)
        if tracker:
            tracker.log_metrics({"zipf_kl": result.fitness, **result.metrics})
            tracker.finish()
        log.info("trial %d: zipf_kl %.4f %s", trial.number, result.fitness, params)
        ran += 1
    return ran


def study_name(cfg: Config) -> str:
    """``search.study_name`` plus a hash of everything a trial's result depends on.

    Rerunning with the same settings resumes the same study; a changed space, sampler, method or
    training knob starts a new one in the same storage. Raising ``search.n_trials`` continues.
    """
    from selfsup.checkpoint import fingerprint

    settings = cfg.to_dict()
    if cfg.search.target == "image":
        settings = {k: v for k, v in settings.items() if k not in ("elo", "video")}
    settings["search"] = {k: v for k, v in settings["search"].items()
                          if k not in ("n_trials", "n_workers", "storage", "study_name", "heartbeat_interval",
                                       "grace_period", "max_retry")}
    return f"{cfg.search.study_name}-{fingerprint(settings)}"


def run_search(cfg: Config, data_dir: Path, study_dir: Path, out_dir: Path, track: bool = True,
               objective: Objective | None = None) -> dict:
    """Create or resume the study in ``study_dir``, run its workers, write best params and trials to ``out_dir``.

    Each trial's config is ``cfg`` with the trial's values on top (``cfg`` as the search stage gets it:
    its resolved params, with what the stage does not read left out).

    ``objective`` computes each trial (default ``objectives.run_trial``, a short training scored by
    Zipf-KL); with ``search.n_workers`` > 1 it must be picklable (a module-level function), since
    the workers are spawned processes.
    """
    base = cfg.to_dict()
    search = cfg.search
    dims = parse_space(search)
    check_space(base, dims)
    if search.sampler == "grid" and search.grid_points ** len(dims) < search.n_trials:
        raise ConfigError(f"search.n_trials={search.n_trials} exceeds the grid's {search.grid_points ** len(dims)} "
                          f"points; raise search.grid_points or lower search.n_trials")
    study_dir, out_dir = Path(study_dir), Path(out_dir)
    storage = open_storage(search, study_dir)
    name = study_name(cfg)
    with storage_errors(search), study_lock(storage, search, study_dir, name):
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
        recover_interrupted(study)
    parent = _parent_run(study_dir, name, cfg, track)
    if search.n_workers == 1:
        worker_loop(base, data_dir, study_dir, name, 0, parent, objective=objective)
    else:
        ctx = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // search.n_workers)
        procs = [ctx.Process(target=worker_loop,
                             args=(base, data_dir, study_dir, name, w, parent, threads, objective))
                 for w in range(search.n_workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad and not reachable(search):
            raise StorageError(f"{len(bad)} search worker(s) stopped and the search storage {redact(search.storage)} "
                               f"cannot be reached. Start the database again and rerun the stage: the study "
                               f"continues where it stopped")
        if bad:
            raise TrainingError(f"{len(bad)} search worker(s) exited with codes {bad}; rerun the stage to "
                                f"continue the study where it stopped")
    with storage_errors(search):
        return write_outputs(study, dims, out_dir, parent)


def trials_table(study: optuna.Study, dims: list[Dimension]) -> tuple[list[str], list[list[str]]]:
    extra = sorted({k for t in study.trials for k in t.user_attrs if k in ("knn_top1", "chance_top1", "final_loss")})
    header = ["trial", "state", "zipf_kl", "best_so_far", *[d.name for d in dims], *extra]
    rows, best = [], float("inf")
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE:
            best = min(best, t.value)
        value = f"{t.value:.5f}" if t.value is not None else ""
        rows.append([str(t.number), t.state.name, value, f"{best:.5f}" if best < float("inf") else "",
                     *[f"{t.params[d.name]:.4f}" if d.name in t.params else "" for d in dims],
                     *[f"{t.user_attrs[k]:.4f}" if k in t.user_attrs else "" for k in extra]])
    return header, rows


def write_outputs(study: optuna.Study, dims: list[Dimension], out_dir: Path, parent_run_id: str | None) -> dict:
    """``best.yaml`` (params-file form, read by elo_pretrain), ``trials.csv``/``.md``, metrics."""
    import yaml

    from selfsup.figures.render import save_table

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise TrainingError("the search finished without a completed trial; see the warnings above")
    best = min(complete, key=lambda t: (t.value, t.number))
    atomic_write_text(out_dir / "best.yaml",
                      f"# best of {len(complete)} trials (trial {best.number}, zipf_kl {best.value:.5f})\n"
                      + yaml.safe_dump(nested(best.params), sort_keys=True))
    save_table(out_dir / "trials", *trials_table(study, dims))
    metrics = {"best_zipf_kl": float(best.value), "best_trial": best.number, "completed_trials": len(complete),
               "failed_trials": sum(t.state == TrialState.FAIL for t in study.trials)}
    write_json(out_dir / "metrics.json", metrics)
    if parent_run_id:
        from selfsup.tracking import Tracker

        tracker = Tracker.attach(parent_run_id)
        tracker.log_metrics(metrics)
        tracker.log_artifact(out_dir / "best.yaml")
        tracker.log_artifact(out_dir / "trials.csv")
        tracker.finish()
    return metrics
