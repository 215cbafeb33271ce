"""Saving figures and tables deterministically: same inputs, same bytes (no dates, fixed fonts)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

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
