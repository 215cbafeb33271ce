"""Writes image runs as the pretrain and evaluate stages lay them out, for the figure tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def write_run(root: Path, name: str, linear: float, knn: float, *, method: str | None = None,
              knobs: dict | None = None, collapse: tuple[float, ...] = (0.05, 0.08), dim: int = 64,
              losses: tuple[float, ...] = (5.0, 4.0)) -> Path:
    """A run folder ``root/name`` with config, history, train and test metrics."""
    pre, ev = root / name / "pretrain", root / name / "evaluate"
    pre.mkdir(parents=True)
    ev.mkdir(parents=True)
    config = {"method": method or name.partition("-")[0], "dataset": "digits-bg", "projector": {"out_dim": dim},
              **(knobs or {})}
    (pre / "config.yaml").write_text(yaml.safe_dump(config))
    rows = ["epoch,step,loss,collapse_std,lr"]
    pairs = enumerate(zip(losses, collapse, strict=True), start=1)
    rows += [f"{epoch},{10 * epoch},{loss},{std},0.1" for epoch, (loss, std) in pairs]
    (pre / "history.csv").write_text("\n".join(rows) + "\n")
    (pre / "metrics.json").write_text(json.dumps({
        "loss": losses[-1], "collapse_std": collapse[-1], "collapse_std_x_sqrt_d": collapse[-1] * dim ** 0.5,
        "epochs": len(losses), "steps": 10 * len(losses)}))
    (ev / "metrics.json").write_text(json.dumps({"linear_top1": linear, "knn_top1": knn,
                                                 "random_linear_top1": 0.15, "random_knn_top1": 0.17}))
    return root / name


@pytest.fixture
def make_run():
    """The ``write_run`` helper, as a fixture."""
    return write_run
