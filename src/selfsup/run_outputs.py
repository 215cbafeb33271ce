"""What a training stage writes when its loop ends, and logs to the run's MLflow record.

In ``records_dir`` (small files kept in git): ``history.csv`` (the loop's per-epoch rows),
``metrics.json`` and ``config.yaml`` (the resolved config). In ``model_dir`` (the DVC cache): the
model file, ``loss.png`` (the curves figure) and ``run.json`` (the MLflow run that evaluation
continues). Only the main process writes; each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selfsup import dist
from selfsup.config import Config
from selfsup.figures.curves import plot_history
from selfsup.io import atomic_write_text, write_json
from selfsup.loop import Loop
from selfsup.params import save_config
from selfsup.tracking import Tracker


def write_run_outputs(loop: Loop, tracker: Tracker | None, cfg: Config, metrics: dict[str, float], title: str,
                      records_dir: Path, model_dir: Path, model_path: Path,
                      write_model: Callable[[Path], None]) -> None:
    """Write the outputs of a finished ``loop`` (``write_model`` writes ``model_path``), log them and
    ``metrics`` (as ``train/final_<name>``) to ``tracker``'s run and close it."""
    if not dist.is_main():
        return
    records_dir, model_dir = Path(records_dir), Path(model_dir)
    write_model(model_path)
    atomic_write_text(records_dir / "history.csv", loop.history.to_csv())
    plot_history(loop.history.rows, model_dir / "loss.png", title, list(loop.task.scheduled_values(0)))
    write_json(records_dir / "metrics.json", metrics)
    save_config(cfg, records_dir / "config.yaml")
    write_json(model_dir / "run.json", {"run_id": loop.run_id or "", "tracking": bool(tracker)})
    if tracker:
        tracker.log_metrics({f"train/final_{k}": v for k, v in metrics.items()}, step=loop.step)
        for path in (records_dir / "config.yaml", records_dir / "history.csv", model_dir / "loss.png", model_path):
            tracker.log_artifact(path)
        tracker.finish()
