"""Training-curve figures, written deterministically (no timestamps, fixed fonts and sizes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from selfsup.figures.render import STYLE, plt, save_figure

LABELS = {"lr": "learning rate", "ema_momentum": "EMA momentum", "teacher_temp": "teacher temperature"}


def plot_history(rows: list[dict], path: Path, title: str, scheduled: Sequence[str] = ()) -> None:
    """Loss and collapse diagnostic per epoch, then one panel per scheduled value in ``scheduled``
    (learning rate, EMA momentum, ...: the columns the loop logs) that changes during the run, side by
    side, saved as PNG at ``path``."""
    epochs = [r["epoch"] for r in rows]
    shown = [k for k in scheduled if rows and k in rows[0] and len({r[k] for r in rows}) > 1]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2 + len(shown), figsize=(4 * (2 + len(shown)), 3), squeeze=False)
        ax_loss, ax_std, *ax_scheduled = axes[0]
        ax_loss.plot(epochs, [r["loss"] for r in rows], color="tab:blue")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
        ax_std.plot(epochs, [r["collapse_std"] for r in rows], color="tab:orange")
        ax_std.set(xlabel="epoch", ylabel="std of l2-normalised z", title="collapse diagnostic")
        for ax, key in zip(ax_scheduled, shown, strict=True):
            ax.plot(epochs, [r[key] for r in rows], color="tab:green")
            ax.set(xlabel="epoch", ylabel=key, title=f"{LABELS.get(key, key)} (end of epoch)")
        fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, Path(path).with_suffix(""), formats=("png",))
