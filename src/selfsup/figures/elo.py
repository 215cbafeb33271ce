"""The ELo comparison (Piergiovanni et al. 2020): RGB-only tasks vs distillation from flow and audio.

Each variant is a folder ``<variant>/evaluate`` holding the ``elo_evaluate`` stage's
``metrics.json`` and ``clusters.json`` (the paper pipeline), or the root is one such folder itself
(the main DAG, whose weights come from the search). One figure puts each variant's linear and kNN accuracy next
to the randomly initialised RGB network (the table adds the Zipf-KL of each); another puts each
variant's ranked cluster masses next to the Zipf prior the fitness compares them with (Sec. 3.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfsup.errors import DataError
from selfsup.figures.render import STYLE, plt, reference_lines, save_figure, save_table

ORDER = ("rgb_only", "distill", "full", "searched")
LABELS = {"rgb_only": "RGB tasks only", "distill": "+ flow/audio distilled", "full": "+ multi-modal tasks (default)",
          "searched": "weights from the search"}


def elo_folders(root: Path) -> dict[str, Path]:
    """``{variant: folder with metrics.json and clusters.json}``, in the order of ``ORDER``."""
    root = Path(root)
    if (root / "metrics.json").is_file():
        return {"searched": root}
    folders = {p.parent.parent.name: p.parent for p in sorted(root.glob("*/evaluate/metrics.json"))}
    if not folders:
        raise DataError(f"no metrics.json or */evaluate/metrics.json under {root}; run `dvc repro` first")
    return dict(sorted(folders.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0])))


def read_elo_variants(folders: dict[str, Path]) -> dict[str, dict]:
    """``{variant: metrics}`` of the folders :func:`elo_folders` found."""
    return {v: json.loads((folder / "metrics.json").read_text()) for v, folder in folders.items()}


def elo_rows(runs: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "linear %", "kNN %", "Zipf-KL", "random linear %", "random kNN %", "random Zipf-KL"]
    rows = [[LABELS.get(v, v), f"{100 * m['linear_top1']:.1f}", f"{100 * m['knn_top1']:.1f}", f"{m['zipf_kl']:.4f}",
             f"{100 * m['random_linear_top1']:.1f}", f"{100 * m['random_knn_top1']:.1f}", f"{m['random_zipf_kl']:.4f}"]
            for v, m in runs.items()]
    return header, rows


def plot_elo(runs: dict[str, dict], stem: Path) -> list[Path]:
    names = list(runs)
    x = np.arange(2)
    width = 0.8 / (len(names) + 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        first = runs[names[0]]
        ax.bar(x - 0.4 + width / 2, [100 * first["random_linear_top1"], 100 * first["random_knn_top1"]], width,
               color="0.7", label="random RGB network")
        for i, name in enumerate(names, start=1):
            m = runs[name]
            ax.bar(x - 0.4 + width / 2 + i * width, [100 * m["linear_top1"], 100 * m["knn_top1"]], width,
                   label=LABELS.get(name, name))
        reference_lines(ax, first, "linear_top1")  # chance (clips have no raw-pixel baseline)
        ax.set(xticks=x, xticklabels=["linear probe", "kNN"], ylabel="action top-1 on the test clips (%)",
               title="ELo on synthetic-actions: the RGB network's frozen features\n"
                     "(raw pixels are not measured for clips)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.tight_layout()
        return save_figure(fig, stem)


def plot_cluster_masses(folders: dict[str, Path], stem: Path) -> list[Path]:
    clusters = {v: json.loads((folder / "clusters.json").read_text()) for v, folder in folders.items()}
    first = next(iter(clusters.values()))
    rank = np.arange(1, first["k"] + 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.plot(rank, first["zipf_prior"], "k--", linewidth=2, label=f"Zipf prior (s = {first['exponent']:g})")
        ax.plot(rank, first["random_masses"], color="0.6", marker="o", markersize=3, label="random RGB network")
        for v in clusters:
            ax.plot(rank, clusters[v]["masses"], marker="o", markersize=3, label=LABELS.get(v, v))
        ax.set(xlabel="cluster rank", ylabel="cluster mass", yscale="log", xticks=rank,
               title="Ranked k-means cluster masses of the RGB features")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return save_figure(fig, stem)


def write_elo(root: Path, out: Path) -> list[Path]:
    folders = elo_folders(root)
    runs = read_elo_variants(folders)
    stem = Path(out) / "elo_distillation"
    return (plot_elo(runs, stem) + save_table(stem, *elo_rows(runs))
            + plot_cluster_masses(folders, Path(out) / "elo_cluster_masses"))
