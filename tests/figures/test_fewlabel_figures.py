"""The few-label grids are drawn from their metrics files alone, byte-identically on a rerun."""

from __future__ import annotations

import json
from pathlib import Path

from selfsup.figures.fewlabel import augment_rows, fraction_rows, read_augment_grid, read_fraction_grid, write_fewlabel


def _metrics(folder: Path, **values: float) -> None:
    folder.mkdir(parents=True)
    out = {}
    for prefix, top1 in values.items():
        out[f"{prefix}_top1"] = top1
        out[f"{prefix}_top1_stderr"] = (top1 * (1 - top1) / 1000) ** 0.5
    (folder / "metrics.json").write_text(json.dumps(out))


def test_grids_read_tabulate_and_redraw_identically(tmp_path: Path) -> None:
    root = tmp_path / "fewlabel"
    for run, fraction, scale in (("simclrv2", "1", 0.5), ("simclrv2", "10", 1.0), ("byol", "10", 0.8)):
        _metrics(root / f"{run}-{fraction}pct" / "finetune", scratch=0.2 * scale, finetuned=0.4 * scale)
        _metrics(root / f"{run}-{fraction}pct" / "distill_self", student=0.45 * scale)
    _metrics(root / "simclrv2-10pct" / "selftrain", student=0.3)
    for level, pre in (("s1", 0.1), ("s4", 0.02)):
        _metrics(root / f"augment-{level}" / "finetune", scratch=0.3, finetuned=0.3 + pre)
        _metrics(root / f"augment-{level}" / "selftrain_random", student=0.35)
    (root / "notes").mkdir()  # not a run: ignored

    grid = read_fraction_grid(root)
    assert sorted(grid) == [("byol", 0.1), ("simclrv2", 0.01), ("simclrv2", 0.1)]
    assert grid["simclrv2", 0.01]["pretrain + fine-tune"][0] == 0.2
    header, rows = fraction_rows(grid)
    assert header[:3] == ["run", "labels %", "supervised from scratch"]
    assert rows[1][:4] == ["simclrv2", "1", "10.0 ± 0.9", "20.0 ± 1.3"]
    assert rows[2][-1] == "30.0 ± 1.4" and rows[0][-1] == ""

    augment = read_augment_grid(root)
    _, rows = augment_rows(augment)
    assert [r[0] for r in rows] == ["s1", "s4"]
    assert rows[0][5:] == ["+10.0", "+5.0", ""] and rows[1][5] == "+2.0"

    first = write_fewlabel(root, tmp_path / "a")
    second = write_fewlabel(root, tmp_path / "b")
    stems = ("fewlabel_fractions", "fewlabel_augmentation")
    assert sorted(p.name for p in first) == sorted(f"{s}.{e}" for s in stems for e in ("png", "svg", "md", "csv"))
    for a, b in zip(sorted(first), sorted(second), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert write_fewlabel(tmp_path / "missing", tmp_path / "c") == []
