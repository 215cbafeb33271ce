"""Labeled subsets: exact class balance, a seeded draw, clear errors, and one set of indices for every arm."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup.errors import ConfigError, DataError
from selfsup.fewlabel.subsets import balanced_subset, read_subset, subset_name, write_subsets

LABELS = np.repeat(np.arange(10), [503, 497, 500, 512, 488, 505, 499, 501, 495, 500])


def test_each_class_keeps_its_fraction_rounded_half_up() -> None:
    index = balanced_subset(LABELS, 0.01, seed=0)
    counts = np.bincount(LABELS[index], minlength=10)
    assert counts.tolist() == [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    index = balanced_subset(LABELS, 0.1, seed=0)
    assert np.bincount(LABELS[index]).tolist() == [50, 50, 50, 51, 49, 51, 50, 50, 50, 50]
    assert (np.diff(index) > 0).all()


def test_the_draw_is_fixed_by_the_seed() -> None:
    a, b, c = (balanced_subset(LABELS, 0.01, seed) for seed in (3, 3, 4))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert len(a) == len(c)


def test_a_fraction_that_empties_a_class_names_it_and_the_smallest_class() -> None:
    labels = np.array([0] * 100 + [1] * 20 + [2] * 60)
    with pytest.raises(ConfigError, match=r"0\.02 leaves a class without a label: the smallest class has 20"):
        balanced_subset(labels, 0.02, 0)
    assert np.bincount(labels[balanced_subset(labels, 0.025, 0)]).tolist() == [3, 1, 2]
    for bad in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ConfigError, match="must be in"):
            balanced_subset(labels, bad, 0)


def test_files_round_trip_and_bad_files_are_named(tmp_path) -> None:
    summary = write_subsets(LABELS, (0.01, 0.1), 0, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10pct.txt", "1pct.txt", "subsets.json"]
    assert summary["subsets"]["1pct"]["per_class"] == [5] * 10
    assert read_subset(tmp_path, 0.01, len(LABELS)).tolist() == balanced_subset(LABELS, 0.01, 0).tolist()
    assert subset_name(0.005) == "0.5pct"
    with pytest.raises(ConfigError, match="add 0.05 to subsets.fractions"):
        read_subset(tmp_path, 0.05, len(LABELS))
    (tmp_path / "1pct.txt").write_text("3\n3\n")
    with pytest.raises(DataError, match="rerun `dvc repro subsets`"):
        read_subset(tmp_path, 0.01, len(LABELS))
    with pytest.raises(DataError, match="without a label"):
        write_subsets(np.array([0, 1, -1, 1]), (0.5,), 0, tmp_path / "other")
