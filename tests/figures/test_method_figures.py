"""The method comparison, curves, lambda sweep and SimSiam ablation: values from the run files,
clear errors when runs are missing, byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfsup.errors import DataError
from selfsup.figures.methods import method_rows, write_methods
from selfsup.figures.runs import defaults_only, read_run, read_runs
from selfsup.figures.sweeps import lambda_rows, lambda_sweep, stop_gradient_pair, stop_gradient_rows, write_sweeps


def _digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def runs(tmp_path: Path, make_run) -> Path:
    root = tmp_path / "runs"
    make_run(root, "simclr", 0.40, 0.35, knobs={"temperature": 0.2})
    make_run(root, "barlow", 0.30, 0.20, knobs={"lambda": 0.005})
    make_run(root, "barlow-lambda0.5", 0.10, 0.12, knobs={"lambda": 0.5})
    make_run(root, "barlow-lambda0.0005", 0.25, 0.22, knobs={"lambda": 0.0005})
    make_run(root, "simsiam", 0.28, 0.21, knobs={"stop_gradient": True}, collapse=(0.10, 0.11), dim=100)
    make_run(root, "simsiam-no_stop_gradient", 0.11, 0.10, knobs={"stop_gradient": False},
             collapse=(0.05, 0.0), dim=100, losses=(-0.5, -1.0))
    return root


def test_method_rows_rank_by_linear_probe_with_gains_over_the_random_backbone(runs: Path) -> None:
    defaults = defaults_only(read_runs(runs))
    assert sorted(defaults) == ["barlow", "simclr", "simsiam"]
    header, rows = method_rows(defaults)
    assert header[:7] == ["method", "linear %", "kNN %", "random linear %", "random kNN %", "gain linear", "gain kNN"]
    assert [r[0] for r in rows] == ["simclr", "barlow", "simsiam"]
    assert rows[0][1:9] == ["40.0", "35.0", "15.0", "17.0", "+25.0", "+18.0", "0.64", "4"]


def test_method_rows_add_the_supervised_ceiling_when_every_evaluation_has_it(runs: Path) -> None:
    for name, linear in (("simclr", 0.40), ("barlow", 0.30), ("simsiam", 0.28)):
        path = runs / name / "evaluate" / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics.update(supervised_top1=0.8, supervised_linear_top1=0.75, supervised_knn_top1=0.7,
                       linear_fraction_of_supervised=linear / 0.8)
        path.write_text(json.dumps(metrics))
    defaults = defaults_only(read_runs(runs))
    header, rows = method_rows(defaults)
    assert header[-2:] == ["supervised %", "linear / supervised %"]
    assert [r[-2:] for r in rows] == [["80.0", "50.0"], ["80.0", "37.5"], ["80.0", "35.0"]]
    # one evaluation without it (an older record): no supervised columns rather than a hole
    del defaults["simsiam"].evaluation["linear_fraction_of_supervised"]
    header, rows = method_rows(defaults)
    assert "supervised %" not in header and {len(r) for r in rows} == {len(header)}


def test_embedding_dim_comes_from_the_two_forms_of_the_collapse_diagnostic(runs: Path) -> None:
    all_runs = read_runs(runs)
    assert all_runs["simclr"].embedding_dim == 64
    assert all_runs["simsiam"].embedding_dim == 100
    assert all_runs["simsiam-no_stop_gradient"].embedding_dim == 100  # std 0: the projector's out_dim


def test_lambda_sweep_orders_barlow_runs_by_their_resolved_lambda(runs: Path) -> None:
    sweep = lambda_sweep(read_runs(runs))
    assert [r.name for r in sweep] == ["barlow-lambda0.0005", "barlow", "barlow-lambda0.5"]
    _, rows = lambda_rows(sweep)
    assert [r[:4] for r in rows] == [["0.0005", "barlow-lambda0.0005", "25.0", "22.0"],
                                     ["0.005", "barlow", "30.0", "20.0"], ["0.5", "barlow-lambda0.5", "10.0", "12.0"]]


def test_simsiam_pair_is_told_apart_by_the_stop_gradient_in_its_config(runs: Path) -> None:
    with_sg, without = stop_gradient_pair(read_runs(runs))
    assert (with_sg.name, without.name) == ("simsiam", "simsiam-no_stop_gradient")
    _, rows = stop_gradient_rows((with_sg, without))
    assert rows[0] == ["with stop-gradient", "28.0", "21.0", "15.0", "17.0", "1.100", "4.0000"]
    assert rows[1] == ["without stop-gradient", "11.0", "10.0", "15.0", "17.0", "0.000", "-1.0000"]


def test_every_figure_is_byte_identical_when_written_twice(runs: Path, tmp_path: Path) -> None:
    def write(out: Path) -> list[Path]:
        all_runs = read_runs(runs)
        return write_methods(defaults_only(all_runs), out) + write_sweeps(all_runs, out)

    first = _digests(write(tmp_path / "a"))
    assert sorted(first) == sorted(f"{stem}.{ext}" for stem, exts in (
        ("method_comparison", ("png", "svg", "csv", "md")), ("method_curves", ("png", "svg")),
        ("barlow_lambda", ("png", "svg", "csv", "md")), ("simsiam_stop_gradient", ("png", "svg", "csv", "md")))
        for ext in exts)
    assert first == _digests(write(tmp_path / "b"))


def test_missing_runs_and_files_are_clear_errors(tmp_path: Path, make_run) -> None:
    with pytest.raises(DataError, match="no <run>/evaluate/metrics.json under"):
        read_runs(tmp_path)
    folder = make_run(tmp_path, "moco", 0.2, 0.2)
    (folder / "pretrain" / "history.csv").unlink()
    with pytest.raises(DataError, match="history.csv is missing; run `dvc repro"):
        read_run(folder / "pretrain", folder / "evaluate")
    make_run(tmp_path / "two", "simsiam", 0.2, 0.2, knobs={"stop_gradient": True})
    make_run(tmp_path / "two", "simsiam-again", 0.2, 0.2, knobs={"stop_gradient": True})
    with pytest.raises(DataError, match="one with false, found 2 and 0"):
        stop_gradient_pair(read_runs(tmp_path / "two"))


def test_accuracy_figures_draw_chance_and_raw_pixels_where_the_metrics_have_them() -> None:
    import numpy as np

    from selfsup.figures.render import plt, reference_lines, reference_marks

    fig, (a, b, c) = plt.subplots(1, 3)
    reference_lines(a, {"chance_top1": 0.1, "pixels_linear_top1": 0.147, "pixels_knn_top1": 0.199}, "linear_top1",
                    vertical=True)
    assert {line.get_label(): line.get_xdata()[0] for line in a.get_lines()} == {"chance": 10.0,
                                                                                  "raw pixels": pytest.approx(14.7)}
    reference_lines(b, {"chance_top1": 0.125}, "knn_top1")  # clips: no raw-pixel baseline
    assert {line.get_label(): line.get_ydata()[0] for line in b.get_lines()} == {"chance": 12.5}
    reference_marks(c, np.arange(2), {"chance_top1": 0.1, "pixels_linear_top1": 0.2, "pixels_knn_top1": 0.3},
                    ("linear_top1", "knn_top1"))
    marks = {coll.get_label(): coll.get_offsets()[:, 1].tolist() for coll in c.collections}
    assert marks == {"chance": [10.0, 10.0], "raw pixels": [pytest.approx(20.0), pytest.approx(30.0)]}
    plt.close(fig)


def test_accuracy_figures_draw_the_supervised_model_where_the_metrics_have_it() -> None:
    import numpy as np

    from selfsup.figures.render import SUPERVISED, plt, reference_lines, reference_marks

    metrics = {"chance_top1": 0.1, "pixels_linear_top1": 0.147, "pixels_knn_top1": 0.199,
               "supervised_linear_top1": 0.85, "supervised_knn_top1": 0.8}
    fig, (a, b, c) = plt.subplots(1, 3)
    reference_lines(a, metrics, "knn_top1", vertical=True)
    assert {line.get_label(): line.get_xdata()[0] for line in a.get_lines()} == {
        "chance": 10.0, "raw pixels": pytest.approx(19.9), SUPERVISED: pytest.approx(80.0)}
    reference_lines(b, {k: v for k, v in metrics.items() if k != "supervised_knn_top1"}, "knn_top1")
    assert SUPERVISED not in {line.get_label() for line in b.get_lines()}
    reference_marks(c, np.arange(2), metrics, ("linear_top1", "knn_top1"))
    marks = {coll.get_label(): coll.get_offsets()[:, 1].tolist() for coll in c.collections}
    assert marks[SUPERVISED] == [pytest.approx(85.0), pytest.approx(80.0)]
    plt.close(fig)
