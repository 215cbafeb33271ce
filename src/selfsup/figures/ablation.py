"""The background-augmentation ablation (Ryali et al. 2021) as a grouped bar chart and a table.

For each method with background runs: ``<method>`` (no background augmentation),
``<method>-bg_estimated`` (masks from the segment stage) and ``<method>-bg_ground_truth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.figures.render import STYLE, plt, reference_lines, save_figure, save_table
from selfsup.figures.runs import ImageRun

VARIANT_ORDER = ("none", "estimated", "ground_truth")
LABELS = {"none": "no background aug", "estimated": "estimated masks", "ground_truth": "ground-truth masks"}


def read_ablation(runs: dict[str, ImageRun]) -> dict[tuple[str, str], dict]:
    """``{(method, variant): test metrics}`` of every method that has a ``-bg_<variant>`` run."""
    methods = {r.method for r in runs.values() if r.variant.startswith("bg_")}
    table = {}
    for run in runs.values():
        variant = run.variant.removeprefix("bg_") if run.variant.startswith("bg_") else run.variant or "none"
        if run.method in methods and variant in VARIANT_ORDER:
            table[run.method, variant] = run.evaluation
    return table


def ablation_rows(runs: dict[tuple[str, str], dict]) -> tuple[list[str], list[list[str]]]:
    """Table: accuracy of each run and its change against the same method without augmentation."""
    header = ["method", "background aug", "linear %", "kNN %", "vs none linear", "vs none kNN",
              "random linear %", "random kNN %"]
    rows = []
    for (method, variant), m in sorted(runs.items(), key=lambda kv: (kv[0][0], VARIANT_ORDER.index(kv[0][1]))):
        base = runs.get((method, "none"))
        deltas = [f"{100 * (m[k] - base[k]):+.1f}" if base else "" for k in ("linear_top1", "knn_top1")]
        rows.append([method, LABELS[variant], f"{100 * m['linear_top1']:.1f}", f"{100 * m['knn_top1']:.1f}",
                     *deltas,
                     f"{100 * m['random_linear_top1']:.1f}", f"{100 * m['random_knn_top1']:.1f}"])
    return header, rows


def plot_ablation(runs: dict[tuple[str, str], dict], stem: Path) -> list[Path]:
    """Linear and kNN accuracy per method, one bar per variant, the random extractor as a tick."""
    methods = sorted({m for m, _ in runs})
    variants = [v for v in VARIANT_ORDER if any(v == w for _, w in runs)]
    width = 0.8 / len(variants)
    x = np.arange(len(methods))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        for ax, key, title in zip(axes, ("linear_top1", "knn_top1"), ("linear probe", "kNN (k=20)"), strict=True):
            for i, variant in enumerate(variants):
                values = [100 * runs[m, variant][key] if (m, variant) in runs else np.nan for m in methods]
                ax.bar(x + (i - (len(variants) - 1) / 2) * width, values, width, label=LABELS[variant])
            randoms = [100 * next(runs[m, v][f"random_{key}"] for v in variants if (m, v) in runs) for m in methods]
            ax.scatter(x, randoms, marker="_", s=900, color="black", zorder=3, label="random extractor")
            reference_lines(ax, next(iter(runs.values())), key)
            ax.set(xticks=x, xticklabels=methods, title=title)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("top-1 accuracy on the test split (%)")
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.suptitle("Background augmentation ablation (digits-bg)")
        fig.tight_layout()
        return save_figure(fig, stem)


def write_ablation(runs: dict[str, ImageRun], out: Path) -> list[Path]:
    """The figure (PNG, SVG) and the table (Markdown, CSV); nothing when no run has a background variant."""
    runs = read_ablation(runs)
    if not runs:
        return []
    header, rows = ablation_rows(runs)
    stem = Path(out) / "background_ablation"
    return plot_ablation(runs, stem) + save_table(stem, header, rows)
