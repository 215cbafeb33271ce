"""One-knob studies: Barlow Twins' off-diagonal weight lambda (Zbontar et al. 2021, Fig. 4) and
SimSiam with and without its stop-gradient (Chen & He 2021, Sec. 4.1, Fig. 2).

The lambda sweep is every ``barlow`` run, placed by the lambda its resolved config used. The SimSiam
ablation is the ``simsiam`` run and ``simsiam-no_stop_gradient``; without the stop-gradient the
paper reports the collapse diagnostic falling to 0 and accuracy to chance, with it near 1/sqrt(d).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.errors import DataError
from selfsup.figures.render import STYLE, percent, plt, reference_marks, save_figure, save_table
from selfsup.figures.runs import ImageRun


def lambda_sweep(runs: dict[str, ImageRun]) -> list[ImageRun]:
    """Every Barlow Twins run, by increasing lambda."""
    sweep = sorted((r for r in runs.values() if r.method == "barlow"), key=lambda r: r.config["lambda"])
    if len(sweep) < 2:
        raise DataError("the lambda sweep needs at least two barlow runs (barlow and barlow-lambda<value>)")
    return sweep


def lambda_rows(sweep: list[ImageRun]) -> tuple[list[str], list[list[str]]]:
    header = ["lambda", "run", "linear %", "kNN %", "collapse std x sqrt(d)", "final loss"]
    return header, [[f"{r.config['lambda']:g}", r.name, percent(r.evaluation["linear_top1"]),
                     percent(r.evaluation["knn_top1"]), f"{r.train['collapse_std_x_sqrt_d']:.2f}",
                     f"{r.train['loss']:.4g}"] for r in sweep]


def plot_lambda(sweep: list[ImageRun], stem: Path) -> list[Path]:
    lambdas = [r.config["lambda"] for r in sweep]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for key, label, marker in (("linear_top1", "linear probe", "o"), ("knn_top1", "kNN", "s")):
            line, = ax.plot(lambdas, [100 * r.evaluation[key] for r in sweep], marker=marker, label=label)
            ax.axhline(100 * sweep[0].evaluation[f"random_{key}"], color=line.get_color(), linestyle="--",
                       linewidth=1, label=f"{label}, random backbone")
            if f"pixels_{key}" in sweep[0].evaluation:
                ax.axhline(100 * sweep[0].evaluation[f"pixels_{key}"], color=line.get_color(), linestyle="-.",
                           linewidth=1, label=f"{label}, raw pixels")
        if "chance_top1" in sweep[0].evaluation:
            ax.axhline(100 * sweep[0].evaluation["chance_top1"], color="0.35", linestyle=":", linewidth=1.2,
                       label="chance")
        ax.set(xscale="log", xlabel="lambda (off-diagonal weight)", ylabel="top-1 on the test split (%)",
               title=f"Barlow Twins lambda sweep ({sweep[0].config['dataset']}, {sweep[0].train['epochs']} epochs)")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return save_figure(fig, stem)


def stop_gradient_pair(runs: dict[str, ImageRun]) -> tuple[ImageRun, ImageRun]:
    """The SimSiam runs with and without the stop-gradient, told apart by their resolved config."""
    simsiam = [r for r in runs.values() if r.method == "simsiam"]
    with_sg = [r for r in simsiam if r.config["stop_gradient"]]
    without = [r for r in simsiam if not r.config["stop_gradient"]]
    if len(with_sg) != 1 or len(without) != 1:
        raise DataError("the SimSiam ablation needs one simsiam run with stop_gradient true and one with false, "
                        f"found {len(with_sg)} and {len(without)}")
    return with_sg[0], without[0]


def stop_gradient_rows(pair: tuple[ImageRun, ImageRun]) -> tuple[list[str], list[list[str]]]:
    header = ["SimSiam", "linear %", "kNN %", "random linear %", "random kNN %", "collapse std x sqrt(d)",
              "final loss (-1: every pair identical)"]
    rows = []
    for label, r in zip(("with stop-gradient", "without stop-gradient"), pair, strict=True):
        e = r.evaluation
        accuracies = [percent(e[k]) for k in ("linear_top1", "knn_top1", "random_linear_top1", "random_knn_top1")]
        rows.append([label, *accuracies, f"{r.train['collapse_std_x_sqrt_d']:.3f}", f"{r.train['loss']:.4f}"])
    return header, rows


def plot_stop_gradient(pair: tuple[ImageRun, ImageRun], stem: Path) -> list[Path]:
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_std, ax_acc) = plt.subplots(1, 3, figsize=(11, 3.3))
        for label, r in zip(("with stop-gradient", "without stop-gradient"), pair, strict=True):
            epochs = [row["epoch"] for row in r.history]
            ax_loss.plot(epochs, [row["loss"] for row in r.history], label=label)
            ax_std.plot(epochs, [row["collapse_std"] for row in r.history], label=label)
        d = pair[0].embedding_dim
        ax_loss.set(xlabel="epoch", ylabel="negative cosine similarity", title="training loss")
        ax_std.axhline(1 / np.sqrt(d), color="black", linestyle=":", linewidth=1, label=f"1/sqrt(d), d = {d}")
        ax_std.set(xlabel="epoch", ylabel="std of l2-normalised z", ylim=(0, None), title="collapse diagnostic")
        x = np.arange(2)
        for i, (label, r) in enumerate(zip(("with", "without"), pair, strict=True)):
            ax_acc.bar(x + (i - 0.5) * 0.35, [100 * r.evaluation["linear_top1"], 100 * r.evaluation["knn_top1"]],
                       0.35, label=f"{label} stop-gradient")
        ax_acc.scatter(x, [100 * pair[0].evaluation["random_linear_top1"], 100 * pair[0].evaluation["random_knn_top1"]],
                       marker="_", s=900, color="black", zorder=3, label="random backbone")
        reference_marks(ax_acc, x, pair[0].evaluation, ("linear_top1", "knn_top1"))
        top = max(100 * max(r.evaluation["linear_top1"], r.evaluation["knn_top1"]) for r in pair)
        ax_acc.set(xticks=x, xticklabels=["linear probe", "kNN"], ylabel="top-1 (%)", title="frozen features",
                   ylim=(0, 1.45 * top))
        for ax in (ax_loss, ax_std, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend(frameon=False, fontsize=7, loc="upper right" if ax is ax_acc else "best")
        fig.suptitle("SimSiam: the stop-gradient prevents collapse")
        fig.tight_layout()
        return save_figure(fig, stem)


def write_sweeps(runs: dict[str, ImageRun], out: Path) -> list[Path]:
    """The lambda sweep and the SimSiam ablation, each where its runs exist."""
    out = Path(out)
    written = []
    if sum(r.method == "barlow" for r in runs.values()) > 1:
        sweep = lambda_sweep(runs)
        written += plot_lambda(sweep, out / "barlow_lambda") + save_table(out / "barlow_lambda", *lambda_rows(sweep))
    if sum(r.method == "simsiam" for r in runs.values()) > 1:
        pair = stop_gradient_pair(runs)
        written += (plot_stop_gradient(pair, out / "simsiam_stop_gradient")
                    + save_table(out / "simsiam_stop_gradient", *stop_gradient_rows(pair)))
    return written
