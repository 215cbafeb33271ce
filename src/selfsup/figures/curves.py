"""Training-curve figures, written deterministically (no timestamps, fixed fonts and sizes)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfsup.io import atomic_write  # noqa: E402

STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "svg.hashsalt": "selfsup", "figure.dpi": 100}


def plot_history(rows: list[dict], path: Path, title: str) -> None:
    """Loss and collapse diagnostic per epoch, side by side, saved as PNG."""
    epochs = [r["epoch"] for r in rows]
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_std) = plt.subplots(1, 2, figsize=(8, 3))
        ax_loss.plot(epochs, [r["loss"] for r in rows], color="tab:blue")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
        ax_std.plot(epochs, [r["collapse_std"] for r in rows], color="tab:orange")
        ax_std.set(xlabel="epoch", ylabel="std of l2-normalised z", title="collapse diagnostic")
        fig.suptitle(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
    atomic_write(Path(path), lambda f: f.write(buf.getvalue()))
