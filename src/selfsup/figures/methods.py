"""The method comparison: every method's frozen features against the random backbone, and each
method's loss and collapse-diagnostic curves.

Accuracy is the evaluate stage's linear probe and kNN top-1 on the test split; the random backbone
is the same architecture untrained (the baseline stage), and where the evaluation has it the
supervised model (the same architecture trained on every label, also the baseline stage) is the
ceiling: the table gives its top-1 and each method's linear probe as a fraction of it, the figure
its frozen features' linear probe and kNN as lines. The collapse diagnostic is the standard
deviation of the l2-normalised embedding per dimension times sqrt(d) (SimSiam, Sec. 4.1): near 1
for a healthy embedding, near 0 when every input maps to one point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.figures.render import STYLE, percent, plt, reference_lines, save_figure, save_table
from selfsup.figures.runs import ImageRun


def method_rows(runs: dict[str, ImageRun]) -> tuple[list[str], list[list[str]]]:
    """One row per run, best linear probe first; with the supervised top-1 and the linear probe's fraction
    of it when every run's evaluation has them."""
    header = ["method", "linear %", "kNN %", "random linear %", "random kNN %", "gain linear", "gain kNN",
              "collapse std x sqrt(d)", "final loss", "epochs"]
    supervised = all("linear_fraction_of_supervised" in r.evaluation for r in runs.values())
    if supervised:
        header += ["supervised %", "linear / supervised %"]
    rows = []
    for run in sorted(runs.values(), key=lambda r: (-r.evaluation["linear_top1"], r.name)):
        e = run.evaluation
        rows.append([run.name, percent(e["linear_top1"]), percent(e["knn_top1"]), percent(e["random_linear_top1"]),
                     percent(e["random_knn_top1"]), f"{100 * (e['linear_top1'] - e['random_linear_top1']):+.1f}",
                     f"{100 * (e['knn_top1'] - e['random_knn_top1']):+.1f}",
                     f"{run.train['collapse_std_x_sqrt_d']:.2f}", f"{run.train['loss']:.4g}",
                     str(run.train["epochs"])])
        if supervised:
            rows[-1] += [percent(e["supervised_top1"]), percent(e["linear_fraction_of_supervised"])]
    return header, rows


def plot_methods(runs: dict[str, ImageRun], stem: Path) -> list[Path]:
    """Horizontal bars of linear and kNN accuracy per method, each with its own random extractor as a tick,
    chance, raw pixels and the supervised model as lines; a run below its random extractor is drawn in red."""
    ordered = sorted(runs.values(), key=lambda r: (r.evaluation["linear_top1"], r.name))
    y = np.arange(len(ordered))
    dataset = ordered[0].config["dataset"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(9, max(0.3 * len(ordered) + 1.6, 2.8)), sharey=True)
        for ax, key, title in zip(axes, ("linear_top1", "knn_top1"), ("linear probe", "kNN"), strict=True):
            below = [r.evaluation[key] < r.evaluation[f"random_{key}"] for r in ordered]
            ax.barh(y, [100 * r.evaluation[key] for r in ordered], color=["C3" if b else "C0" for b in below],
                    label="pretrained")
            if any(below):
                ax.barh([], [], color="C3", label="pretrained, below its random init")
            reference_lines(ax, ordered[0].evaluation, key, vertical=True)
            ax.scatter([100 * r.evaluation[f"random_{key}"] for r in ordered], y, marker="|", s=220,
                       color="black", zorder=3, label="same extractor, random init")
            ax.set(yticks=y, yticklabels=[r.name for r in ordered], xlabel="top-1 on the test split (%)",
                   title=title)
            ax.grid(axis="x", alpha=0.3)
        handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[1]))
        fig.suptitle(f"Frozen features against the same extractor randomly initialised ({dataset}, "
                     f"{ordered[0].train['epochs']} epochs)")
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.0),
                   fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return save_figure(fig, stem)


def plot_curves(runs: dict[str, ImageRun], stem: Path) -> list[Path]:
    """One panel per method: its training loss (left axis) and collapse diagnostic (right axis)."""
    ordered = sorted(runs.values(), key=lambda r: r.name)
    ncols = min(5, len(ordered))
    nrows = -(-len(ordered) // ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(max(2.6 * ncols + 0.6, 6.5), 2.1 * nrows + 0.9),
                                 squeeze=False)
        for i, (ax, run) in enumerate(zip(axes.flat, ordered, strict=False)):
            epochs = [row["epoch"] for row in run.history]
            ax.plot(epochs, [row["loss"] for row in run.history], color="C0")
            ax.set_title(run.name)
            ax.tick_params(axis="y", colors="C0", labelsize=7)
            ax.grid(alpha=0.3)
            twin = ax.twinx()
            sqrt_d = np.sqrt(run.embedding_dim)
            twin.plot(epochs, [row["collapse_std"] * sqrt_d for row in run.history], color="C1")
            twin.set_ylim(0, 1.1)
            twin.tick_params(axis="y", colors="C1", labelsize=7)
            if i % ncols == 0:
                ax.set_ylabel("training loss", color="C0", fontsize=8)
            if i % ncols == ncols - 1 or i == len(ordered) - 1:
                twin.set_ylabel("collapse x sqrt(d)", color="C1", fontsize=8)
        for ax in axes.flat[len(ordered):]:
            ax.axis("off")
        fig.supxlabel("epoch")
        fig.suptitle("Training loss (blue, left axis) and collapse diagnostic\n"
                     "std(z/|z|) x sqrt(d) (orange, right axis: 1 healthy, 0 collapsed)")
        fig.tight_layout()
        return save_figure(fig, stem)


def write_methods(runs: dict[str, ImageRun], out: Path) -> list[Path]:
    """The comparison figure and table and the curves figure of ``runs``."""
    out = Path(out)
    header, rows = method_rows(runs)
    return (plot_methods(runs, out / "method_comparison") + save_table(out / "method_comparison", header, rows)
            + plot_curves(runs, out / "method_curves"))
