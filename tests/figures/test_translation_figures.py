"""The translation table and panel from translate/translate_eval records: values, order, the references
every evaluation shares (checked), and byte-identical files on a rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selfsup.errors import DataError
from selfsup.figures.translation import write_translation

REFS = {"identity": {"l1": 0.41, "l1_se": 0.007, "psnr": 7.27, "ssim": 0.12, "ssim_se": 0.007, "content": 0.11,
                     "content_se": 0.01, "fid": 176.8, "kid": 36.37},
        "black_background": {"l1": 0.081, "l1_se": 0.0015, "psnr": 14.37, "ssim": 0.641, "ssim_se": 0.006,
                             "content": 0.25, "content_se": 0.013, "fid": 28.26, "kid": 1.154},
        "ground_truth": {"l1": 0.0, "l1_se": 0.0, "psnr": 100.0, "ssim": 1.0, "ssim_se": 0.0, "content": 0.833,
                         "content_se": 0.011, "fid": 0.22, "kid": -0.0003}}


def _write(root: Path, name: str, method: str, l1: float, seconds: float, refs: dict = REFS) -> None:
    (root / name / "train").mkdir(parents=True)
    (root / name / "eval").mkdir(parents=True)
    (root / name / "train" / "metrics.json").write_text(json.dumps(
        {"method": method, "steps": 1000, "seconds_per_step": seconds, "peak_rss_mib": 1100.4}))
    scores = {"l1": l1, "l1_se": 0.002, "psnr": 16.5, "ssim": 0.7, "ssim_se": 0.01, "content": 0.6,
              "content_se": 0.015, "fid": 3.5, "kid": 0.12}
    (root / name / "eval" / "metrics.json").write_text(json.dumps({"method": method, "translation": scores,
                                                                   "baselines": refs}))
    panel = np.zeros((3, 4, 3, 16, 16), dtype=np.uint8)
    panel[1] = int(l1 * 1000) % 255
    np.save(root / name / "eval" / "panel.npy", panel)


def test_table_rows_and_panel(tmp_path: Path) -> None:
    runs = tmp_path / "translate"
    _write(runs, "cut-last_layer", "cut", 0.09, 0.4)
    _write(runs, "cut", "cut", 0.06, 0.41)
    _write(runs, "cyclegan", "cyclegan", 0.07, 0.52)
    written = write_translation(runs, tmp_path / "fig")
    assert sorted(p.name for p in written) == ["translation.csv", "translation.md", "translation_panel.png",
                                               "translation_panel.svg"]
    lines = (tmp_path / "fig" / "translation.csv").read_text().splitlines()
    assert lines[0] == "run,method,L1 (± SE),PSNR dB,SSIM (± SE),content % (± SE),FID (judge),KID (judge),s/step," \
                       "peak MiB,steps"
    assert [line.split(",")[0] for line in lines[1:]] == [
        "cyclegan", "cut", "cut-last_layer", "identity (output = input)", "black background (segment mask)",
        "ground truth"]
    assert lines[2] == "cut,cut,0.060 ± 0.002,16.50,0.700 ± 0.010,60.0 ± 1.5,3.50,0.120,0.410,1100,1000"
    assert lines[5].startswith("black background (segment mask),reference,0.081 ± 0.002,14.37,0.641 ± 0.006,25.0 ± 1.3")
    before = {p.name: p.read_bytes() for p in written}
    again = write_translation(runs, tmp_path / "fig2")
    assert {p.name: p.read_bytes() for p in again} == before


def test_references_must_agree_and_records_must_exist(tmp_path: Path) -> None:
    runs = tmp_path / "translate"
    _write(runs, "cut", "cut", 0.06, 0.4)
    _write(runs, "fastcut", "fastcut", 0.07, 0.3, refs={**REFS, "identity": {**REFS["identity"], "l1": 0.5}})
    with pytest.raises(DataError, match="reference scores of fastcut"):
        write_translation(runs, tmp_path / "fig")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no translation run"):
        write_translation(tmp_path / "empty", tmp_path / "fig")
