"""The committed figures and tables of both DAGs are what the figures stage draws from the committed
records: the same files, byte for byte (so `dvc repro -s -f ...:figures` on a fresh clone changes nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

FIGURES = {
    "main": (["--run", "results/pretrain", "results/evaluate", "--elo", "results/elo_evaluate",
              "--search", "results/search"], "results/figures"),
    "paper": (["--runs", "results/paper/runs", "--elo", "results/paper/elo", "--search", "results/paper/search",
               "--fewlabel", "results/paper/fewlabel", "--translate", "results/paper/translate"],
              "results/paper/figures"),
}


@pytest.mark.parametrize("dag", sorted(FIGURES))
def test_committed_figures_are_redrawn_byte_identically_from_the_records(dag: str, tmp_path: Path) -> None:
    args, committed = FIGURES[dag]
    out = tmp_path / "figures"
    proc = subprocess.run([sys.executable, "stages/figures.py", *args, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = {p.name: p.read_bytes() for p in out.iterdir()}
    kept = {p.name: p.read_bytes() for p in (REPO / committed).iterdir()}
    assert sorted(drawn) == sorted(kept)
    assert [name for name in sorted(kept) if drawn[name] != kept[name]] == []
