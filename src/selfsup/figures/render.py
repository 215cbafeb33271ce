"""Saving figures and tables deterministically: same inputs, same bytes (no dates, fixed fonts)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfsup.io import atomic_write, atomic_write_text  # noqa: E402

STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "svg.hashsalt": "selfsup", "figure.dpi": 100,
         "svg.fonttype": "path"}
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def save_figure(fig: plt.Figure, stem: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format, atomically, then close it."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=METADATA[fmt])
        path = Path(f"{stem}.{fmt}")
        atomic_write(path, lambda f, data=buf.getvalue(): f.write(data))
        paths.append(path)
    plt.close(fig)
    return paths


SUPERVISED = "supervised, same architecture"


def reference_lines(ax: plt.Axes, metrics: dict, key: str, vertical: bool = False) -> None:
    """Chance, raw pixels and the supervised model's frozen features for the accuracy ``key``
    (``linear_top1`` or ``knn_top1``), as lines across ``ax`` (vertical ones for horizontal bars), where
    ``metrics`` has them; every accuracy figure shows them next to the random network."""
    line = ax.axvline if vertical else ax.axhline
    if "chance_top1" in metrics:
        line(100 * metrics["chance_top1"], color="0.35", linestyle=":", linewidth=1.2, label="chance")
    if f"pixels_{key}" in metrics:
        line(100 * metrics[f"pixels_{key}"], color="C3", linestyle="-.", linewidth=1, label="raw pixels")
    if f"supervised_{key}" in metrics:
        line(100 * metrics[f"supervised_{key}"], color="C2", linestyle="--", linewidth=1, label=SUPERVISED)


def reference_marks(ax: plt.Axes, x: np.ndarray, metrics: dict, keys: tuple[str, ...]) -> None:
    """Chance, raw pixels and the supervised model's frozen features as marks at the bar positions ``x``
    of the accuracies ``keys``."""
    if "chance_top1" in metrics:
        ax.scatter(x, [100 * metrics["chance_top1"]] * len(keys), marker="_", s=900, color="0.35",
                   linestyle=":", zorder=3, label="chance")
    if all(f"pixels_{k}" in metrics for k in keys):
        ax.scatter(x, [100 * metrics[f"pixels_{k}"] for k in keys], marker="x", s=30, color="C3", zorder=4,
                   label="raw pixels")
    if all(f"supervised_{k}" in metrics for k in keys):
        ax.scatter(x, [100 * metrics[f"supervised_{k}"] for k in keys], marker="^", s=30, color="C2", zorder=4,
                   label=SUPERVISED)


def percent(fraction: float) -> str:
    """A fraction as a table cell in percent with one decimal: 0.4321 -> "43.2"."""
    return f"{100 * fraction:.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_table(stem: Path, header: list[str], rows: list[list[str]]) -> list[Path]:
    """Write the table as ``stem.md`` (Markdown) and ``stem.csv``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(Path(f"{stem}.csv"), out.getvalue())
    atomic_write_text(Path(f"{stem}.md"), markdown_table(header, rows))
    return [Path(f"{stem}.csv"), Path(f"{stem}.md")]
