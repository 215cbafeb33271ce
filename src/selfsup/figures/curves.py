"""Training-curve figures, written deterministically (no timestamps, fixed fonts and sizes)."""

from __future__ import annotations

from pathlib import Path

from selfsup.figures.render import STYLE, plt, save_figure


def plot_history(rows: list[dict], path: Path, title: str) -> None:
    """Loss and collapse diagnostic per epoch, side by side, saved as PNG at ``path``."""
    epochs = [r["epoch"] for r in rows]
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_std) = plt.subplots(1, 2, figsize=(8, 3))
        ax_loss.plot(epochs, [r["loss"] for r in rows], color="tab:blue")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
        ax_std.plot(epochs, [r["collapse_std"] for r in rows], color="tab:orange")
        ax_std.set(xlabel="epoch", ylabel="std of l2-normalised z", title="collapse diagnostic")
        fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, Path(path).with_suffix(""), formats=("png",))
