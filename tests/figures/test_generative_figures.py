"""The beta sweep and the codebook-usage table: values from the runs' records, byte-identical reruns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from selfsup.errors import DataError
from selfsup.figures.generative import beta_rows, beta_sweep, codebook_rows, write_generative
from selfsup.figures.runs import ImageRun


def _run(name: str, config: dict, evaluation: dict) -> ImageRun:
    base = {"dataset": "digits-bg", "method": name.split("-")[0]}
    return ImageRun(name, {**base, **config}, {"epochs": 40, "loss": 1.0, "collapse_std": 0.1,
                                               "collapse_std_x_sqrt_d": 1.0}, [], evaluation)


def _beta(beta: float, recon: float, kl: float, units: int, score: float) -> ImageRun:
    return _run(f"betavae-beta{beta:g}", {"beta": beta, "capacity": False, "latent_dim": 10},
                {"recon_mse": recon, "mean_image_mse": 0.05, "kl": kl, "active_units": units, "betavae_score": score,
                 "betavae_chance": 1 / 6, "mig": score / 4, "linear_top1": 0.3, "knn_top1": 0.25})


def _runs() -> dict[str, ImageRun]:
    runs = [_beta(4.0, 0.010, 20.0, 6, 0.5), _beta(1.0, 0.005, 40.0, 10, 0.4), _beta(16.0, 0.030, 5.0, 2, 0.6),
            _run("betavae-capacity", {"beta": 1.0, "capacity": True, "latent_dim": 10}, {}),
            _run("vqvae", {"ema": False, "restart_after": 0, "n_codes": 512},
                 {"recon_mse": 0.004, "perplexity": 37.25, "codes_used": 80, "linear_top1": 0.4, "knn_top1": 0.3}),
            _run("vqvae-ema_restart", {"ema": True, "restart_after": 100, "n_codes": 512},
                 {"recon_mse": 0.003, "perplexity": 201.5, "codes_used": 400, "linear_top1": 0.41, "knn_top1": 0.3})]
    return {r.name: r for r in runs}


def test_beta_sweep_orders_by_beta_and_leaves_the_capacity_run_out() -> None:
    sweep = beta_sweep(_runs())
    assert [r.config["beta"] for r in sweep] == [1.0, 4.0, 16.0]
    header, rows = beta_rows(sweep)
    assert header[:5] == ["beta", "run", "recon MSE", "mean-image MSE", "KL (nats)"]
    assert rows[0] == ["1", "betavae-beta1", "0.0050", "0.0500", "40.0", "10 (of 10)", "0.400", "0.100", "30.0",
                       "25.0"]
    with pytest.raises(DataError, match="at least two betavae runs"):
        beta_sweep({"betavae-beta1": _runs()["betavae-beta1"]})


def test_codebook_table_names_each_runs_switches() -> None:
    _, rows = codebook_rows(_runs())
    assert rows == [["vqvae", "no", "never", "512", "0.0040", "37.2", "80", "40.0", "30.0"],
                    ["vqvae-ema_restart", "yes", "100 steps", "512", "0.0030", "201.5", "400", "41.0", "30.0"]]


def test_generative_figures_are_byte_identical_on_a_rerun(tmp_path: Path) -> None:
    def digests(paths: list[Path]) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}

    first = digests(write_generative(_runs(), tmp_path / "a"))
    assert sorted(first) == ["beta_sweep.csv", "beta_sweep.md", "beta_sweep.png", "beta_sweep.svg",
                             "vqvae_codebook.csv", "vqvae_codebook.md"]
    assert first == digests(write_generative(_runs(), tmp_path / "b"))
