"""The generative methods' figures: beta-VAE's trade-off over beta, and VQ-VAE's codebook usage.

- beta sweep (Higgins et al. 2017, Sec. 4 / Fig. 6; Burgess et al. 2018, Sec. 3): every ``betavae`` run,
  placed by its beta: reconstruction error, KL, active units and the two disentanglement scores
  against beta. The paper's trade-off: a larger beta buys a more factorised code (fewer active units,
  higher scores up to a point) with worse reconstructions.
- codebook usage: every ``vqvae`` run with its switches (``ema``, ``restart_after``), its test
  reconstruction error, perplexity and codes used out of K.

Both read the runs' evaluate metrics and resolved configs only.
"""

from __future__ import annotations

from pathlib import Path

from selfsup.errors import DataError
from selfsup.figures.render import STYLE, percent, plt, save_figure, save_table
from selfsup.figures.runs import ImageRun


def beta_sweep(runs: dict[str, ImageRun]) -> list[ImageRun]:
    """Every beta-VAE run without the capacity objective, by increasing beta."""
    sweep = sorted((r for r in runs.values() if r.method == "betavae" and not r.config["capacity"]),
                   key=lambda r: r.config["beta"])
    if len(sweep) < 2:
        raise DataError("the beta sweep needs at least two betavae runs (betavae-beta<value>)")
    return sweep


def _score(e: dict, key: str) -> str:
    return f"{e[key]:.3f}" if key in e else ""


def beta_rows(sweep: list[ImageRun]) -> tuple[list[str], list[list[str]]]:
    header = ["beta", "run", "recon MSE", "mean-image MSE", "KL (nats)", "active units (of d)", "beta-VAE score",
              "MIG", "linear %", "kNN %"]
    rows = []
    for r in sweep:
        e = r.evaluation
        rows.append([f"{r.config['beta']:g}", r.name, f"{e['recon_mse']:.4f}", f"{e['mean_image_mse']:.4f}",
                     f"{e['kl']:.1f}", f"{e['active_units']} (of {r.config['latent_dim']})",
                     _score(e, "betavae_score"), _score(e, "mig"), percent(e["linear_top1"]),
                     percent(e["knn_top1"])])
    return header, rows


def plot_beta(sweep: list[ImageRun], stem: Path) -> list[Path]:
    betas = [r.config["beta"] for r in sweep]
    e = [r.evaluation for r in sweep]
    panels = (("recon_mse", "reconstruction MSE per value", "mean_image_mse"),
              ("kl", "KL(q(z|x) || p(z)) per image (nats)", None),
              ("active_units", "active units", None),
              ("betavae_score", "disentanglement", None))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.2))
        for ax, (key, label, reference) in zip(axes, panels, strict=True):
            if key == "betavae_score":
                for k, name in (("betavae_score", "beta-VAE score"), ("mig", "MIG")):
                    if all(k in m for m in e):
                        ax.plot(betas, [m[k] for m in e], marker="o", label=name)
                if all("betavae_chance" in m for m in e):
                    ax.axhline(e[0]["betavae_chance"], color="0.35", linestyle=":", label="beta-VAE score, chance")
                ax.legend(frameon=False, fontsize=7)
            else:
                ax.plot(betas, [m[key] for m in e], marker="o")
                if reference:
                    ax.axhline(e[0][reference], color="0.35", linestyle="--", label="mean image")
                    ax.legend(frameon=False, fontsize=7)
            ax.set(xscale="log", xlabel="beta", ylabel=label)
            ax.set_xticks(betas, [f"{b:g}" for b in betas])
            ax.grid(alpha=0.3)
        fig.suptitle(f"beta-VAE: reconstruction against a factorised code ({sweep[0].config['dataset']}, "
                     f"{sweep[0].train['epochs']} epochs)")
        fig.tight_layout()
        return save_figure(fig, stem)


def codebook_rows(runs: dict[str, ImageRun]) -> tuple[list[str], list[list[str]]]:
    """One row per VQ-VAE run: its codebook switches and what its test codes use."""
    header = ["run", "EMA codebook", "dead-code restart after", "K", "recon MSE", "perplexity", "codes used",
              "linear %", "kNN %"]
    rows = []
    for r in sorted((r for r in runs.values() if r.method == "vqvae"), key=lambda r: r.name):
        e, c = r.evaluation, r.config
        restart = f"{c['restart_after']} steps" if c["restart_after"] else "never"
        rows.append([r.name, "yes" if c["ema"] else "no", restart, str(c["n_codes"]), f"{e['recon_mse']:.4f}",
                     f"{e['perplexity']:.1f}", str(e["codes_used"]),
                     percent(e["linear_top1"]), percent(e["knn_top1"])])
    return header, rows


def write_generative(runs: dict[str, ImageRun], out: Path) -> list[Path]:
    """The beta sweep's figure and table and the codebook-usage table, each where its runs exist."""
    out = Path(out)
    written = []
    if sum(r.method == "betavae" for r in runs.values()) > 1:
        sweep = beta_sweep(runs)
        written += plot_beta(sweep, out / "beta_sweep") + save_table(out / "beta_sweep", *beta_rows(sweep))
    if any(r.method == "vqvae" for r in runs.values()):
        written += save_table(out / "vqvae_codebook", *codebook_rows(runs))
    return written
