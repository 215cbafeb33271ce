"""Reading finished image runs for the figures: only the files the stages wrote, never a model.

A run is a ``pretrain`` folder (``config.yaml``, ``metrics.json``, ``history.csv``) and an
``evaluate`` folder (``metrics.json``). The paper pipeline keeps each under ``runs/<name>/``, where
``<name>`` is a method with its defaults or ``<method>-<variant>`` for a run that changes one thing
(``barlow-lambda0.05``, ``simsiam-no_stop_gradient``, ``moco-bg_estimated``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from selfsup.errors import DataError


@dataclass(frozen=True)
class ImageRun:
    """What the figures need of one run: its resolved config, training curves and test metrics."""

    name: str
    config: dict
    train: dict
    history: list[dict]
    evaluation: dict

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def variant(self) -> str:
        """The part of the name after ``<method>-``; empty for a method with its defaults."""
        return self.name.partition("-")[2]

    @property
    def embedding_dim(self) -> int:
        """Dimension d of the embedding the collapse diagnostic is measured on (from its two forms;
        the projector's output size when the run collapsed to a standard deviation of exactly 0)."""
        if self.train["collapse_std"] > 0:
            return round((self.train["collapse_std_x_sqrt_d"] / self.train["collapse_std"]) ** 2)
        return int(self.config["projector"]["out_dim"])


def _read(path: Path, hint: str) -> str:
    if not path.is_file():
        raise DataError(f"{path} is missing; {hint}")
    return path.read_text()


def read_run(pretrain: Path, evaluate: Path, name: str | None = None,
             hint: str = "run `dvc repro` first") -> ImageRun:
    """One run from its ``pretrain`` and ``evaluate`` folders; ``name`` defaults to the method."""
    config = yaml.safe_load(_read(Path(pretrain) / "config.yaml", hint))
    history = [{k: float(v) for k, v in row.items()}
               for row in csv.DictReader(_read(Path(pretrain) / "history.csv", hint).splitlines())]
    return ImageRun(name=name or config["method"], config=config,
                    train=json.loads(_read(Path(pretrain) / "metrics.json", hint)), history=history,
                    evaluation=json.loads(_read(Path(evaluate) / "metrics.json", hint)))


def read_runs(root: Path) -> dict[str, ImageRun]:
    """Every run under ``root/<name>/{pretrain,evaluate}``, sorted by name."""
    hint = "run `dvc repro pipelines/paper/dvc.yaml` first"
    names = sorted(p.parent.parent.name for p in Path(root).glob("*/evaluate/metrics.json"))
    if not names:
        raise DataError(f"no <run>/evaluate/metrics.json under {root}; {hint}")
    return {n: read_run(Path(root) / n / "pretrain", Path(root) / n / "evaluate", n, hint) for n in names}


def defaults_only(runs: dict[str, ImageRun]) -> dict[str, ImageRun]:
    """The runs of methods with their defaults (names without a ``-<variant>``)."""
    return {name: run for name, run in runs.items() if not run.variant}
