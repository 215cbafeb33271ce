"""The training-curve figure draws a panel for each scheduled value that changes during the run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from selfsup.figures.curves import plot_history

ROWS = [{"epoch": e, "step": 10 * e, "loss": 5.0 - e, "collapse_std": 0.1, "lr": 0.3 / e,
         "ema_momentum": 0.99 + 0.002 * e, "constant": 1.0} for e in range(1, 5)]


def _width(path: Path) -> int:
    return matplotlib.image.imread(path).shape[1]


def test_each_changing_scheduled_value_gets_a_panel(tmp_path: Path) -> None:
    plot_history(ROWS, tmp_path / "two.png", "two panels")
    plot_history(ROWS, tmp_path / "four.png", "four panels", ["lr", "ema_momentum", "constant", "absent"])
    plot_history(ROWS, tmp_path / "constant.png", "a constant value is not drawn", ["constant"])
    two, four = _width(tmp_path / "two.png"), _width(tmp_path / "four.png")
    assert four / two == 2.0
    assert _width(tmp_path / "constant.png") == two
