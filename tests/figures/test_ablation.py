"""The background-ablation figure and table: values, deltas, and byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfsup.errors import DataError
from selfsup.figures.ablation import ablation_rows, read_ablation, write_ablation


def _run(root: Path, name: str, linear: float, knn: float) -> None:
    path = root / name / "evaluate" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"linear_top1": linear, "knn_top1": knn,
                                "random_linear_top1": 0.15, "random_knn_top1": 0.17}))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "background"
    _run(root, "moco-none", 0.224, 0.166)
    _run(root, "moco-estimated", 0.301, 0.250)
    _run(root, "moco-ground_truth", 0.315, 0.262)
    _run(root, "byol-none", 0.218, 0.184)
    _run(root, "byol-estimated", 0.200, 0.170)
    return root


def test_rows_give_each_run_its_change_against_the_same_method_without_augmentation(runs: Path) -> None:
    header, rows = ablation_rows(read_ablation(runs))
    assert header[:6] == ["method", "background aug", "linear %", "kNN %", "vs none linear", "vs none kNN"]
    assert [r[:2] for r in rows] == [["byol", "no background aug"], ["byol", "estimated masks"],
                                     ["moco", "no background aug"], ["moco", "estimated masks"],
                                     ["moco", "ground-truth masks"]]
    assert rows[1][2:6] == ["20.0", "17.0", "-1.8", "-1.4"]
    assert rows[4][2:6] == ["31.5", "26.2", "+9.1", "+9.6"]
    assert rows[2][4:6] == ["+0.0", "+0.0"]


def test_figures_and_tables_are_byte_identical_when_written_twice(runs: Path, tmp_path: Path) -> None:
    def digests(out: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in write_ablation(runs, out)}

    first, second = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert sorted(first) == ["background_ablation.csv", "background_ablation.md", "background_ablation.png",
                             "background_ablation.svg"]
    assert first == second


def test_a_missing_or_misnamed_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `dvc repro pipelines/paper/dvc.yaml` first"):
        read_ablation(tmp_path)
    _run(tmp_path, "moco_nobg", 0.2, 0.2)
    with pytest.raises(DataError, match="must be named <method>-<none|estimated|ground_truth>"):
        read_ablation(tmp_path)
