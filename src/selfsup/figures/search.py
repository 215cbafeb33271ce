"""Search figures: best Zipf-KL so far vs trial for each sampler (mean over seeds), and Zipf-KL vs
downstream accuracy over every trial with its Spearman rank correlation.

Each study is a folder ``<sampler>-s<seed>`` holding the ``search`` stage's ``trials.csv`` (the paper
pipeline), or the root holds one ``trials.csv`` itself (the main DAG's single study, named "search").
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from selfsup.errors import DataError
from selfsup.figures.render import STYLE, plt, reference_lines, save_figure, save_table


def read_studies(root: Path) -> dict[tuple[str, int], list[dict]]:
    """``{(sampler, seed): completed trials in order}`` from ``root/<sampler>-s<seed>/trials.csv``,
    or ``{("search", 0): ...}`` from ``root/trials.csv``."""
    root = Path(root)
    paths = {("search", 0): root / "trials.csv"} if (root / "trials.csv").is_file() else {}
    if not paths:
        for path in sorted(root.glob("*/trials.csv")):
            sampler, sep, seed = path.parent.name.rpartition("-s")
            if not sep or not seed.isdigit():
                raise DataError(f"{path}: study folders must be named <sampler>-s<seed>")
            paths[sampler, int(seed)] = path
    studies = {}
    for key, path in paths.items():
        with path.open() as f:
            studies[key] = [r for r in csv.DictReader(f) if r["state"] == "COMPLETE"]
    if not studies:
        raise DataError(f"no trials.csv or */trials.csv under {root}; run `dvc repro` first")
    return studies


def best_so_far(rows: list[dict]) -> np.ndarray:
    return np.minimum.accumulate(np.array([float(r["zipf_kl"]) for r in rows]))


def search_rows(studies: dict[tuple[str, int], list[dict]]) -> tuple[list[str], list[list[str]]]:
    header = ["sampler", "seeds", "trials per study", "best Zipf-KL (mean)", "best Zipf-KL per seed"]
    rows = []
    for sampler in sorted({s for s, _ in studies}):
        runs = [(seed, best_so_far(studies[sampler, seed])) for s, seed in sorted(studies) if s == sampler]
        finals = [curve[-1] for _, curve in runs]
        rows.append([sampler, str(len(runs)), str(min(len(c) for _, c in runs)), f"{np.mean(finals):.4f}",
                     " ".join(f"s{seed}:{curve[-1]:.4f}" for seed, curve in runs)])
    return header, rows


def plot_progress(studies: dict[tuple[str, int], list[dict]], stem: Path) -> list[Path]:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for i, sampler in enumerate(sorted({s for s, _ in studies})):
            keys = [key for key in sorted(studies) if key[0] == sampler]
            curves = [best_so_far(studies[key]) for key in keys]
            n = min(len(c) for c in curves)
            stack = np.stack([c[:n] for c in curves])
            trials = np.array([int(r["trial"]) for r in studies[keys[0]][:n]])  # as numbered in trials.csv
            colour = f"C{i}"
            for curve in stack:
                ax.plot(trials, curve, color=colour, alpha=0.25, linewidth=0.8)
            label = sampler if len(curves) == 1 else f"{sampler} (mean of {len(curves)} seeds)"
            ax.plot(trials, stack.mean(0), color=colour, linewidth=2, label=label)
        ax.set(xlabel="trial (numbered as in trials.csv)", ylabel="best Zipf-KL so far (lower is better)",
               title="Loss-weight search progress", ylim=(0, None))
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        fig.tight_layout()
        return save_figure(fig, stem)


def zipf_vs_accuracy(studies: dict[tuple[str, int], list[dict]]) -> tuple[np.ndarray, np.ndarray, float]:
    """Zipf-KL and kNN accuracy of every completed trial, and their Spearman rank correlation."""
    rows = [r for key in sorted(studies) for r in studies[key] if r.get("knn_top1")]
    zipf = np.array([float(r["zipf_kl"]) for r in rows])
    acc = np.array([float(r["knn_top1"]) for r in rows])
    rho = float(spearmanr(zipf, acc).statistic) if len(rows) > 2 else float("nan")
    return zipf, acc, rho


def plot_zipf_vs_accuracy(studies: dict[tuple[str, int], list[dict]], stem: Path) -> list[Path]:
    zipf, acc, rho = zipf_vs_accuracy(studies)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.scatter(zipf, 100 * acc, s=14, alpha=0.7, label="trial")
        chance = next((float(r["chance_top1"]) for key in sorted(studies) for r in studies[key]
                       if r.get("chance_top1")), None)
        if chance is not None:
            reference_lines(ax, {"chance_top1": chance}, "knn_top1")
            ax.legend(frameon=False, fontsize=8)
        ax.set(xlabel="Zipf-KL of the trial (no labels)", ylabel="kNN top-1 on the test clips (%)",
               title=f"Every search trial: Spearman rho = {rho:+.2f} (n = {len(zipf)})")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, stem)


def write_search(root: Path, out: Path) -> list[Path]:
    studies = read_studies(root)
    out = Path(out)
    _, _, rho = zipf_vs_accuracy(studies)
    header, rows = search_rows(studies)
    rows.append(["all trials", "", "", "", f"Spearman rho(Zipf-KL, kNN) = {rho:+.3f}"])
    return (plot_progress(studies, out / "search_progress") + plot_zipf_vs_accuracy(studies, out / "zipf_vs_accuracy")
            + save_table(out / "search_progress", header, rows))
