"""The translation figures: the methods table and the panel of the CUT paper's comparison (Park et al.
2020, Fig. 4 / Table 1), from the ``translate`` and ``translate_eval`` records only.

- ``translation.{md,csv}``: one row per run (paired error against the known answers, content kept,
  FID/KID in the judge's feature space, seconds per step and peak memory), then the reference outputs
  every evaluation scores alike (identity, black background, ground truth).
- ``translation_panel.{png,svg}``: the same test images as input, translated by each of CycleGAN,
  CUT, FastCUT and DCLGAN, and their ground truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfsup.errors import DataError
from selfsup.figures.render import STYLE, percent, plt, save_figure, save_table

PANEL_METHODS = ("cyclegan", "cut", "fastcut", "dclgan")
REFERENCE_NAMES = {"identity": "identity (output = input)", "black_background": "black background (segment mask)",
                   "ground_truth": "ground truth"}


@dataclass
class TranslationRun:
    name: str
    train: dict
    eval: dict
    panel: np.ndarray  # uint8 (3, n, 3, H, W): inputs, translations, ground truths


def read_translation(folder: Path) -> dict[str, TranslationRun]:
    """Every ``<run>/train`` + ``<run>/eval`` pair under ``folder``, by run name."""
    runs = {}
    for run_dir in sorted(Path(folder).iterdir()):
        paths = [run_dir / "train" / "metrics.json", run_dir / "eval" / "metrics.json", run_dir / "eval" / "panel.npy"]
        if not all(p.is_file() for p in paths):
            continue
        try:
            runs[run_dir.name] = TranslationRun(run_dir.name, json.loads(paths[0].read_text()),
                                                json.loads(paths[1].read_text()), np.load(paths[2]))
        except (OSError, ValueError) as exc:
            raise DataError(f"translation records of {run_dir} are unreadable ({exc}); rerun "
                            f"`dvc repro pipelines/paper/dvc.yaml:translate_eval@{run_dir.name}`") from exc
    if not runs:
        raise DataError(f"no translation run with train and eval records under {folder}")
    return runs


def _order(runs: dict[str, TranslationRun]) -> list[TranslationRun]:
    first = [runs[m] for m in PANEL_METHODS if m in runs]
    return first + [r for name, r in sorted(runs.items()) if name not in PANEL_METHODS]


def _with_se(value: float, se: float, digits: int) -> str:
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def _scores(s: dict) -> list[str]:
    return [_with_se(s["l1"], s["l1_se"], 3), f"{s['psnr']:.2f}", _with_se(s["ssim"], s["ssim_se"], 3),
            f"{percent(s['content'])} ± {100 * s['content_se']:.1f}", f"{s['fid']:.2f}", f"{s['kid']:.3f}"]


def references(runs: dict[str, TranslationRun]) -> dict[str, dict]:
    """The reference outputs' scores, which every evaluation computes alike (checked)."""
    ordered = _order(runs)
    refs = ordered[0].eval["baselines"]
    for r in ordered[1:]:
        if r.eval["baselines"] != refs:
            raise DataError(f"the reference scores of {r.name} differ from {ordered[0].name}'s: their evaluations "
                            f"ran on other data or settings; rerun the translate_eval stages")
    return refs


def translation_rows(runs: dict[str, TranslationRun]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "method", "L1 (± SE)", "PSNR dB", "SSIM (± SE)", "content % (± SE)", "FID (judge)",
              "KID (judge)", "s/step", "peak MiB", "steps"]
    rows = [[r.name, r.train["method"], *_scores(r.eval["translation"]), f"{r.train['seconds_per_step']:.3f}",
             f"{r.train['peak_rss_mib']:.0f}", str(r.train["steps"])] for r in _order(runs)]
    for key, scores in references(runs).items():
        rows.append([REFERENCE_NAMES.get(key, key), "reference", *_scores(scores), "", "", ""])
    return header, rows


def plot_panel(runs: dict[str, TranslationRun], stem: Path) -> list[Path]:
    """Inputs, each panel method's translations and the ground truths of the same test images."""
    shown = [runs[m] for m in PANEL_METHODS if m in runs]
    first = shown[0].panel
    for r in shown[1:]:
        if not np.array_equal(r.panel[0], first[0]):
            raise DataError(f"the panel of {r.name} shows other test images than {shown[0].name}'s")
    rows = [("input", first[0])] + [(r.name, r.panel[1]) for r in shown] + [("ground truth", first[2])]
    n = first.shape[1]
    with plt.style.context(STYLE):
        fig, axes = plt.subplots(len(rows), n, figsize=(0.9 * n + 1.2, 0.9 * len(rows)), squeeze=False)
        for i, (label, images) in enumerate(rows):
            for j in range(n):
                ax = axes[i][j]
                ax.imshow(images[j].transpose(1, 2, 0), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center")
        fig.suptitle("digits-bg -> plain digits: held-out test images")
        fig.tight_layout()
        return save_figure(fig, stem)


def write_translation(folder: Path, out: Path) -> list[Path]:
    """The table and, where a panel method ran, the panel; returns the files written."""
    runs = read_translation(folder)
    out = Path(out)
    written = save_table(out / "translation", *translation_rows(runs))
    if any(m in runs for m in PANEL_METHODS):
        written += plot_panel(runs, out / "translation_panel")
    return written
