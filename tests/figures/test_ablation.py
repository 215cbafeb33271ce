"""The background-ablation figure and table: values, deltas, and byte-identical reruns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from selfsup.figures.ablation import ablation_rows, read_ablation, write_ablation
from selfsup.figures.runs import read_runs


@pytest.fixture
def runs(tmp_path: Path, make_run) -> Path:
    write_run = make_run
    root = tmp_path / "runs"
    write_run(root, "moco", 0.224, 0.166)
    write_run(root, "moco-bg_estimated", 0.301, 0.250)
    write_run(root, "moco-bg_ground_truth", 0.315, 0.262)
    write_run(root, "byol", 0.218, 0.184)
    write_run(root, "byol-bg_estimated", 0.200, 0.170)
    write_run(root, "simclr", 0.40, 0.35)  # no background runs: not in the ablation
    write_run(root, "barlow-lambda0.05", 0.30, 0.25, knobs={"lambda": 0.05})  # another study
    return root


def test_rows_give_each_run_its_change_against_the_same_method_without_augmentation(runs: Path) -> None:
    header, rows = ablation_rows(read_ablation(read_runs(runs)))
    assert header[:6] == ["method", "background aug", "linear %", "kNN %", "vs none linear", "vs none kNN"]
    assert [r[:2] for r in rows] == [["byol", "no background aug"], ["byol", "estimated masks"],
                                     ["moco", "no background aug"], ["moco", "estimated masks"],
                                     ["moco", "ground-truth masks"]]
    assert rows[1][2:6] == ["20.0", "17.0", "-1.8", "-1.4"]
    assert rows[4][2:6] == ["31.5", "26.2", "+9.1", "+9.6"]
    assert rows[2][4:6] == ["+0.0", "+0.0"]


def test_figures_and_tables_are_byte_identical_when_written_twice(runs: Path, tmp_path: Path) -> None:
    def digests(out: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in write_ablation(read_runs(runs), out)}

    first, second = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert sorted(first) == ["background_ablation.csv", "background_ablation.md", "background_ablation.png",
                             "background_ablation.svg"]
    assert first == second


def test_no_background_runs_write_no_ablation(tmp_path: Path, make_run) -> None:
    make_run(tmp_path, "moco", 0.2, 0.2)
    assert write_ablation(read_runs(tmp_path), tmp_path / "out") == []
