"""Zipf-KL fitness (Piergiovanni et al. 2020, Sec. 3.3) against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfsup.config.video import ZipfConfig
from selfsup.eval.zipf import cluster_masses, kl_divergence, zipf_kl, zipf_prior


def _clusters(sizes: list[int], noise: float = 0.0, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Points around orthogonal unit directions e_0, e_1, ... with the given cluster sizes."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.tile(np.eye(dim)[i], (n, 1)) for i, n in enumerate(sizes)])
    return x + noise * rng.standard_normal(x.shape)


def test_zipf_prior_by_hand() -> None:
    # s = 1, k = 3: H = 1 + 1/2 + 1/3 = 11/6, q = (6/11, 3/11, 2/11)
    assert np.allclose(zipf_prior(3, 1.0), [6 / 11, 3 / 11, 2 / 11], rtol=1e-12)
    # s = 2, k = 2: H = 1 + 1/4 = 5/4, q = (0.8, 0.2)
    assert np.allclose(zipf_prior(2, 2.0), [0.8, 0.2], rtol=1e-12)
    assert math.isclose(zipf_prior(7, 0.5).sum(), 1.0, rel_tol=1e-12)


def test_cluster_masses_by_hand() -> None:
    # x = 0, 0, 1 and centres 0, 1 (1-D). p(c|x=0) = (1, e^-1) / (1 + e^-1) = (a, b) with
    # a = 0.731059, b = 0.268941; p(c|x=1) = (b, a). Masses: ((2a + b) / 3, (2b + a) / 3).
    a = 1 / (1 + math.exp(-1))
    b = 1 - a
    expected = [(2 * a + b) / 3, (2 * b + a) / 3]
    assert np.allclose(expected, [0.577020, 0.422980], atol=1e-6)
    x = np.array([[0.0], [0.0], [1.0]])
    assert np.allclose(cluster_masses(x, np.array([[0.0], [1.0]])), expected, rtol=1e-12)
    # ranked by mass, whatever the order of the centres
    assert np.allclose(cluster_masses(x, np.array([[1.0], [0.0]])), expected, rtol=1e-12)


def test_kl_divergence_by_hand() -> None:
    # KL((1/2, 1/2) || (2/3, 1/3)) = 1/2 log(3/4) + 1/2 log(3/2) = 0.058892
    assert math.isclose(kl_divergence([0.5, 0.5], [2 / 3, 1 / 3]), 0.5 * math.log(0.75) + 0.5 * math.log(1.5))
    assert math.isclose(kl_divergence([0.5, 0.5], [2 / 3, 1 / 3]), 0.058892, abs_tol=1e-6)
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))  # 0 log 0 = 0
    with pytest.raises(ValueError, match="infinite"):
        kl_divergence([0.5, 0.5], [1.0, 0.0])


def test_zero_when_the_masses_are_zipf() -> None:
    q = zipf_prior(3, 1.0)
    assert kl_divergence(q, q) == 0.0
    # cluster sizes 6, 3, 2 of 11 are exactly Zipf(3, 1): on the centroids (hard limit) and with noise
    assert zipf_kl(_clusters([6, 3, 2]), k=3, exponent=1.0) == pytest.approx(0.0, abs=1e-12)
    assert zipf_kl(_clusters([60, 30, 20], noise=1e-3), k=3, exponent=1.0) == pytest.approx(0.0, abs=1e-6)


def test_uniform_masses_and_collapse_score_worse_than_zipf() -> None:
    # uniform over 3: 1/3 (log(11/18) + log(11/9) + log(11/6)) = 0.104777
    uniform = zipf_kl(_clusters([40, 40, 40], noise=1e-3), k=3, exponent=1.0)
    assert uniform == pytest.approx(0.104777, abs=1e-5)
    # one cluster holds everything: KL = -log q_1 = log H_{3,1} = log(11/6) = 0.606136
    collapsed = zipf_kl(np.ones((30, 8)), k=3, exponent=1.0)
    assert collapsed == pytest.approx(math.log(11 / 6), abs=1e-12)
    assert 0.0 < uniform < collapsed


def test_features_are_l2_normalised_so_scale_does_not_matter() -> None:
    x = np.random.default_rng(1).standard_normal((60, 5))
    assert zipf_kl(x * 1000.0, k=4) == pytest.approx(zipf_kl(x, k=4), abs=1e-9)


def test_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(2).standard_normal((80, 6))
    cfg = ZipfConfig()
    first = zipf_kl(x, cfg.k, cfg.exponent, cfg.seed, cfg.n_init)
    assert zipf_kl(x, cfg.k, cfg.exponent, cfg.seed, cfg.n_init) == first
    assert first > 0.0


def test_too_few_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="N >= k"):
        zipf_kl(np.zeros((3, 2)), k=8)
