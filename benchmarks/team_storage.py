"""What the team backends cost, measured side by side in one run on localhost.

1. **Search throughput**: trials per minute of the real search code (``run_search``: workers, locks,
   heartbeats, storage writes) with 1, 2 and 4 worker processes, on the journal file and on a real
   PostgreSQL server. Each trial is an analytic function of its params that sleeps ``--trial-seconds``
   (a stand-in for training), so the rate shows what the storage and the process model add.
2. **MLflow logging**: milliseconds per ``log_metrics`` call of the lab's ``Tracker`` (one training
   step's log line), into the sqlite default and into an ``mlflow server`` backed by PostgreSQL.

Needs Debian's ``postgresql`` package (the binaries ``initdb`` and ``pg_ctl``) and runs the servers
itself in a temporary folder, bound to 127.0.0.1.

    python benchmarks/team_storage.py                        # writes benchmarks/records/team_storage.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the servers the tests use: tests/servers.py

from selfsup.config import Config  # noqa: E402
from selfsup.io import write_json  # noqa: E402
from selfsup.params import config_from_dict  # noqa: E402
from selfsup.search.objectives import TrialResult  # noqa: E402
from selfsup.search.study import run_search  # noqa: E402
from servers import MlflowServer, PostgresServer  # noqa: E402

SPACE = {"elo.weights.rgb.reconstruct": [0.0, 1.0], "elo.weights.flow.distill": [0.0, 1.0]}
TRIAL_SECONDS = float(os.environ.get("SELFSUP_BENCH_TRIAL_SECONDS", "0.5"))


def sleeping_trial(cfg: Config, data_dir: Path) -> TrialResult:
    """A trial that takes ``TRIAL_SECONDS`` and scores its two weights (module level: workers are spawned)."""
    time.sleep(TRIAL_SECONDS)
    a, b = cfg.elo.weights.rgb.reconstruct, cfg.elo.weights.flow.distill
    return TrialResult((a - 0.25) ** 2 + (b - 0.75) ** 2, {})


def search_rate(storage: str | None, workers: int, trials: int, root: Path) -> float:
    """Trials per minute of one fresh study with ``workers`` processes."""
    cfg = config_from_dict({"search": {"space": SPACE, "sampler": "random", "n_trials": trials,
                                       "n_workers": workers, "storage": storage,
                                       "study_name": f"bench-{workers}-{time.monotonic_ns()}"}})
    start = time.perf_counter()
    metrics = run_search(cfg, root / "data", root / f"study-{workers}-{time.monotonic_ns()}", root / "out",
                         track=False, objective=sleeping_trial)
    assert metrics["completed_trials"] == trials
    return trials / ((time.perf_counter() - start) / 60)


def logging_ms(uri: str, steps: int) -> float:
    """Milliseconds per Tracker.log_metrics call (a step's loss terms and learning rate) into ``uri``."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from selfsup.tracking import Tracker

    tracker = Tracker.start({"stage": "benchmark"}, run_name=f"logging-{time.monotonic_ns()}")
    values = {"train/loss": 1.0, "train/nce": 0.5, "train/d_loss": 0.2, "train/lr": 0.1}
    start = time.perf_counter()
    for step in range(steps):
        tracker.log_metrics(values, step=step)
    seconds = time.perf_counter() - start
    tracker.finish()
    return 1000 * seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24, help="trials per study")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=200, help="log_metrics calls per store")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/records/team_storage.json")
    args = parser.parse_args()
    record: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "trial_seconds": TRIAL_SECONDS,
                    "trials": args.trials, "steps": args.steps, "search": {}, "logging_ms": {}}
    pg = PostgresServer()
    pg.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for workers in args.workers:
                for name, storage in (("journal", None), ("postgresql", pg.create_database(f"search{workers}"))):
                    rate = search_rate(storage, workers, args.trials, root)
                    record["search"].setdefault(name, {})[str(workers)] = rate
                    print(f"search, {name:10s} {workers} worker(s): {rate:6.1f} trials/min", flush=True)
            os.chdir(root)
            record["logging_ms"]["sqlite"] = logging_ms(f"sqlite:///{root / 'mlflow.db'}", args.steps)
            server = MlflowServer(pg.create_database("mlflow"), root)
            try:
                record["logging_ms"]["server"] = logging_ms(server.uri, args.steps)
            finally:
                server.remove()
            for name, ms in record["logging_ms"].items():
                print(f"MLflow log_metrics into {name:6s}: {ms:6.2f} ms per step", flush=True)
    finally:
        os.chdir(REPO)
        pg.remove()
    write_json(args.out, record)


if __name__ == "__main__":
    main()
