"""The few-label grids of the paper pipeline as figures and tables (SimCLR v2; Zoph et al. 2020).

Two grids under one folder (``results/paper/fewlabel``), each run a folder of stage outputs:

- ``<run>-<percent>pct/``: a pretrained run fine-tuned on a labeled subset (``finetune``: the
  supervised-from-scratch arm and the fine-tuned arm), then self-distilled (``distill_self``), distilled
  into a smaller student (``distill_small``) and self-trained from the from-scratch teacher
  (``selftrain``). Drawn as test top-1 against the label fraction, one line per arm.
- ``augment-<level>/``: at one label fraction, the supervised arms (``finetune``: random init and
  SSL init) and self-training from each (``selftrain_random``, ``selftrain_ssl``) at augmentation level
  ``s1``..``s4``. Drawn as test top-1 against the level: does pretraining's gain shrink as augmentation
  grows while self-training's holds?

Every number carries the binomial standard error of the test split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from selfsup.figures.render import STYLE, plt, save_figure, save_table

# arm -> (stage folder, metrics key prefix)
FRACTION_ARMS = {
    "supervised from scratch": ("finetune", "scratch"),
    "pretrain + fine-tune": ("finetune", "finetuned"),
    "+ self-distillation": ("distill_self", "student"),
    "+ distillation into a smaller student": ("distill_small", "student"),
    "self-training (from-scratch teacher)": ("selftrain", "student"),
}
AUGMENT_ARMS = {
    "random init, supervised": ("finetune", "scratch"),
    "SSL init, supervised": ("finetune", "finetuned"),
    "random init, self-training": ("selftrain_random", "student"),
    "SSL init, self-training": ("selftrain_ssl", "student"),
}
FRACTION_RUN = re.compile(r"^(?P<run>.+)-(?P<percent>[\d.]+)pct$")
AUGMENT_RUN = re.compile(r"^augment-(?P<level>s\d)$")


def _arms(folder: Path, arms: dict[str, tuple[str, str]]) -> dict[str, tuple[float, float]]:
    out = {}
    for arm, (stage, prefix) in arms.items():
        path = folder / stage / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            out[arm] = (float(m[f"{prefix}_top1"]), float(m[f"{prefix}_top1_stderr"]))
    return out


def read_fraction_grid(root: Path) -> dict[tuple[str, float], dict[str, tuple[float, float]]]:
    """``{(run, label fraction): {arm: (top-1, standard error)}}`` of every ``<run>-<percent>pct`` folder."""
    grid = {}
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        match = FRACTION_RUN.match(folder.name)
        if match and (arms := _arms(folder, FRACTION_ARMS)):
            grid[match["run"], float(match["percent"]) / 100] = arms
    return grid


def read_augment_grid(root: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """``{level: {arm: (top-1, standard error)}}`` of every ``augment-<level>`` folder."""
    grid = {}
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        match = AUGMENT_RUN.match(folder.name)
        if match and (arms := _arms(folder, AUGMENT_ARMS)):
            grid[match["level"]] = arms
    return grid


def _cell(value: tuple[float, float] | None) -> str:
    return "" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"


def fraction_rows(grid: dict) -> tuple[list[str], list[list[str]]]:
    header = ["run", "labels %", *FRACTION_ARMS]
    rows = [[run, f"{100 * fraction:g}", *(_cell(arms.get(arm)) for arm in FRACTION_ARMS)]
            for (run, fraction), arms in sorted(grid.items())]
    return header, rows


def augment_rows(grid: dict) -> tuple[list[str], list[list[str]]]:
    header = ["augmentation", *AUGMENT_ARMS, "pretraining gain", "self-training gain (random init)",
              "self-training gain (SSL init)"]
    pairs = (("SSL init, supervised", "random init, supervised"),
             ("random init, self-training", "random init, supervised"),
             ("SSL init, self-training", "SSL init, supervised"))
    rows = [[level, *(_cell(arms.get(arm)) for arm in AUGMENT_ARMS),
             *(_gain(arms, a, b) for a, b in pairs)] for level, arms in sorted(grid.items())]
    return header, rows


def _gain(arms: dict[str, tuple[float, float]], a: str, b: str) -> str:
    return f"{100 * (arms[a][0] - arms[b][0]):+.1f}" if a in arms and b in arms else ""


def plot_fraction_grid(grid: dict, stem: Path) -> list[Path]:
    runs = sorted({run for run, _ in grid})
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 3.6), sharey=True, squeeze=False)
        for ax, run in zip(axes[0], runs, strict=True):
            fractions = sorted(f for r, f in grid if r == run)
            for arm in FRACTION_ARMS:
                points = [(100 * f, grid[run, f][arm]) for f in fractions if arm in grid[run, f]]
                if points:
                    x = [p[0] for p in points]
                    ax.errorbar(x, [100 * p[1][0] for p in points], yerr=[100 * p[1][1] for p in points],
                                marker="o", capsize=3, label=arm)
            ax.set(xscale="log", xlabel="labeled fraction of the train split (%)", title=run)
            ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test top-1 (%) ± standard error")
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        fig.suptitle("Few labels: fine-tuning, distillation and self-training")
        fig.tight_layout()
        return save_figure(fig, stem)


def plot_augment_grid(grid: dict, stem: Path) -> list[Path]:
    levels = sorted(grid)
    x = np.arange(len(levels))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for arm in AUGMENT_ARMS:
            values = [grid[level].get(arm) for level in levels]
            if any(v is not None for v in values):
                ax.errorbar(x, [np.nan if v is None else 100 * v[0] for v in values],
                            yerr=[0 if v is None else 100 * v[1] for v in values], marker="o", capsize=3, label=arm)
        ax.set(xticks=x, xticklabels=[level.upper() for level in levels], xlabel="augmentation strength",
               ylabel="test top-1 (%) ± standard error", title="Pre-training and self-training as augmentation grows")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        fig.tight_layout()
        return save_figure(fig, stem)


def write_fewlabel(root: Path, out: Path) -> list[Path]:
    """Both grids' figures (PNG, SVG) and tables (Markdown, CSV); nothing for a grid with no run."""
    written = []
    fractions = read_fraction_grid(root)
    if fractions:
        stem = Path(out) / "fewlabel_fractions"
        written += plot_fraction_grid(fractions, stem) + save_table(stem, *fraction_rows(fractions))
    augment = read_augment_grid(root)
    if augment:
        stem = Path(out) / "fewlabel_augmentation"
        written += plot_augment_grid(augment, stem) + save_table(stem, *augment_rows(augment))
    return written
