"""The ELo and search figures and tables: values from the metrics files, byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfsup.errors import DataError
from selfsup.figures.elo import elo_folders, elo_rows, read_elo_variants, write_elo
from selfsup.figures.search import best_so_far, read_studies, search_rows, write_search, zipf_vs_accuracy


def _digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _elo(root: Path, variant: str, linear: float, knn: float, zipf: float) -> None:
    path = root / variant / "evaluate" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"linear_top1": linear, "knn_top1": knn, "zipf_kl": zipf, "random_linear_top1": 0.2,
                                "random_knn_top1": 0.15, "random_zipf_kl": 0.3}))
    (path.parent / "clusters.json").write_text(json.dumps({"k": 3, "exponent": 1.0, "masses": [0.5, 0.3, 0.2],
                                                           "random_masses": [0.4, 0.35, 0.25],
                                                           "zipf_prior": [6 / 11, 3 / 11, 2 / 11]}))


def _study(root: Path, name: str, values: list[float]) -> None:
    """Trials whose kNN accuracy falls exactly as their Zipf-KL rises (rank correlation -1)."""
    (root / name).mkdir(parents=True)
    lines = ["trial,state,zipf_kl,best_so_far,elo.weights.flow.distill,knn_top1"]
    lines += [f"{i},COMPLETE,{v},,0.5,{1 - v}" for i, v in enumerate(values)]
    lines.insert(2, "99,FAIL,,,0.1,")
    (root / name / "trials.csv").write_text("\n".join(lines) + "\n")


def test_elo_table_orders_variants_and_reports_zipf(tmp_path: Path) -> None:
    _elo(tmp_path, "full", 0.9, 0.8, 0.05)
    _elo(tmp_path, "rgb_only", 0.5, 0.4, 0.12)
    header, rows = elo_rows(read_elo_variants(elo_folders(tmp_path)))
    assert header[:4] == ["variant", "linear %", "kNN %", "Zipf-KL"]
    assert rows == [["RGB tasks only", "50.0", "40.0", "0.1200", "20.0", "15.0", "0.3000"],
                    ["+ multi-modal tasks (default)", "90.0", "80.0", "0.0500", "20.0", "15.0", "0.3000"]]
    first = _digests(write_elo(tmp_path, tmp_path / "a"))
    assert sorted(first) == ["elo_cluster_masses.png", "elo_cluster_masses.svg", "elo_distillation.csv",
                             "elo_distillation.md", "elo_distillation.png", "elo_distillation.svg"]
    assert first == _digests(write_elo(tmp_path, tmp_path / "b"))


def test_search_progress_is_the_running_minimum_averaged_over_seeds(tmp_path: Path) -> None:
    _study(tmp_path, "cmaes-s0", [0.5, 0.3, 0.4, 0.1])
    _study(tmp_path, "cmaes-s1", [0.2, 0.6, 0.15, 0.35])
    _study(tmp_path, "random-s0", [0.6, 0.45, 0.55, 0.42])
    studies = read_studies(tmp_path)
    assert len(studies["cmaes", 0]) == 4  # the FAIL row is left out
    assert best_so_far(studies["cmaes", 0]).tolist() == [0.5, 0.3, 0.3, 0.1]
    _, rows = search_rows(studies)
    assert rows[0][:4] == ["cmaes", "2", "4", "0.1250"] and rows[1][:4] == ["random", "1", "4", "0.4200"]
    zipf, acc, rho = zipf_vs_accuracy(studies)
    assert len(zipf) == len(acc) == 12 and rho == pytest.approx(-1.0)
    assert _digests(write_search(tmp_path, tmp_path / "a")) == _digests(write_search(tmp_path, tmp_path / "b"))


def test_misnamed_study_folder_is_a_clear_error(tmp_path: Path) -> None:
    _study(tmp_path, "cmaes", [0.1])
    with pytest.raises(DataError, match="<sampler>-s<seed>"):
        read_studies(tmp_path)


def test_main_dag_forms_one_study_and_one_elo_folder(tmp_path: Path) -> None:
    _study(tmp_path, "search", [0.4, 0.2, 0.3])
    studies = read_studies(tmp_path / "search")
    assert list(studies) == [("search", 0)] and best_so_far(studies["search", 0]).tolist() == [0.4, 0.2, 0.2]
    _elo(tmp_path / "elo", "x", 0.7, 0.6, 0.1)
    single = tmp_path / "elo" / "x" / "evaluate"
    assert list(read_elo_variants(elo_folders(single))) == ["searched"]
    written = write_search(tmp_path / "search", tmp_path / "out") + write_elo(single, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert "search_progress.png" in names and "elo_cluster_masses.svg" in names
