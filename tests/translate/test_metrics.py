"""Translation metrics: L1, PSNR, SSIM, FID, KID and accuracy against hand-computed values."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from selfsup.translate.metrics import (
    PSNR_CAP_DB,
    accuracy_with_se,
    frechet_distance,
    kernel_distance,
    l1_per_image,
    paired_metrics,
    psnr_per_image,
    ssim_per_image,
)

C1, C2 = 0.01 ** 2, 0.03 ** 2


def _random_images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_l1_and_psnr_by_hand() -> None:
    x = torch.full((3, 3, 4, 4), 0.5)
    y = x.clone()
    y[0] += 0.1                      # constant difference 0.1: L1 0.1, MSE 0.01, PSNR 10 log10(1/0.01) = 20 dB
    y[1, :, :2] += 0.2               # half the pixels differ by 0.2: L1 0.1, MSE 0.02, PSNR 10 log10(50)
    # y[2] == x[2]: L1 0, PSNR capped
    assert torch.allclose(l1_per_image(x, y), torch.tensor([0.1, 0.1, 0.0], dtype=torch.float64), atol=1e-7)
    psnr = psnr_per_image(x, y)
    assert psnr.shape == (3,) and psnr.dtype == torch.float64
    assert psnr[0].item() == pytest.approx(20.0, abs=1e-4)
    assert psnr[1].item() == pytest.approx(10 * math.log10(50), abs=1e-4)
    assert psnr[2].item() == PSNR_CAP_DB == 100.0
    # data_range scales: on [0, 255] a difference of 25.5 is again 20 dB
    assert psnr_per_image(x[:1] * 255, y[:1] * 255, data_range=255.0).item() == pytest.approx(20.0, abs=1e-4)


def test_per_image_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        l1_per_image(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_of_identical_images_is_one_and_is_symmetric() -> None:
    x, y = _random_images(4, seed=0), _random_images(4, seed=1)
    assert torch.allclose(ssim_per_image(x, x), torch.ones(4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(ssim_per_image(x, y), ssim_per_image(y, x), atol=1e-12)
    assert (ssim_per_image(x, y).abs() < 0.1).all()  # independent noise: no structure in common


def test_ssim_is_low_against_the_negation_and_a_constant() -> None:
    x = _random_images(2)
    neg = ssim_per_image(x, 1 - x)
    assert (neg < -0.5).all()  # perfectly anti-correlated: the structure term is about -1
    flat = ssim_per_image(x, torch.full_like(x, 0.5))
    assert (flat.abs() < 0.05).all()  # no variance in y: the structure term is C2 / (var_x + C2)
    noisy = (x + 0.1 * _random_images(2, seed=5)).clamp(0, 1)
    assert (ssim_per_image(x, noisy) > 0.5).all()


def test_ssim_of_constant_images_by_hand() -> None:
    # x = a, y = b everywhere: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.6
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert expected == pytest.approx(0.2401 / 0.4001)
    assert ssim_per_image(x, y).item() == pytest.approx(expected, abs=1e-6)
    # per channel, then the mean over channels: channel values (a, b), (b, b), (a, a) -> (expected + 1 + 1) / 3
    x2 = torch.stack([torch.full((16, 16), v) for v in (a, b, a)]).unsqueeze(0)
    y2 = torch.stack([torch.full((16, 16), v) for v in (b, b, a)]).unsqueeze(0)
    assert ssim_per_image(x2, y2).item() == pytest.approx((expected + 2) / 3, abs=1e-6)


def test_ssim_of_an_11x11_image_is_one_gaussian_window_by_hand() -> None:
    # An 11x11 image has a single valid window: SSIM is Eq. 13 of Wang et al. with Gaussian-weighted statistics.
    rng = np.random.default_rng(3)
    x, y = rng.random((11, 11)), rng.random((11, 11))
    y = 0.6 * x + 0.4 * y
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    expected = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))
    got = ssim_per_image(torch.from_numpy(x).view(1, 1, 11, 11), torch.from_numpy(y).view(1, 1, 11, 11))
    assert got.item() == pytest.approx(expected, abs=1e-10)


def test_ssim_matches_scikit_image() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x, y = _random_images(2, seed=0), _random_images(2, seed=1)
    y = (0.7 * x + 0.3 * y).double()
    ours = ssim_per_image(x, y)
    for i in range(2):
        ref = skm.structural_similarity(x[i].double().numpy(), y[i].numpy(), channel_axis=0, data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


def test_paired_metrics_standard_errors_by_hand() -> None:
    # Three constant 11x11 image pairs: outputs 0.5, targets 0.5 + d with d = 0, 0.1, 0.2.
    d = [0.0, 0.1, 0.2]
    outputs = torch.full((3, 1, 11, 11), 0.5, dtype=torch.float64)
    targets = torch.stack([torch.full((1, 11, 11), 0.5 + v, dtype=torch.float64) for v in d])
    m = paired_metrics(outputs, targets)
    assert set(m) == {"l1", "l1_se", "psnr", "psnr_se", "ssim", "ssim_se"}
    assert all(isinstance(v, float) for v in m.values())
    # L1 values 0, 0.1, 0.2: mean 0.1, sample std 0.1, se 0.1 / sqrt 3
    assert m["l1"] == pytest.approx(0.1)
    assert m["l1_se"] == pytest.approx(0.1 / math.sqrt(3))
    psnr = [100.0, 20.0, 10 * math.log10(1 / 0.04)]
    assert m["psnr"] == pytest.approx(statistics.mean(psnr), abs=1e-6)
    assert m["psnr_se"] == pytest.approx(statistics.stdev(psnr) / math.sqrt(3), abs=1e-6)
    ssim = [(2 * 0.5 * (0.5 + v) + C1) / (0.25 + (0.5 + v) ** 2 + C1) for v in d]
    assert m["ssim"] == pytest.approx(statistics.mean(ssim), abs=1e-9)
    assert m["ssim_se"] == pytest.approx(statistics.stdev(ssim) / math.sqrt(3), abs=1e-9)


def _with_moments(z: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Samples whose sample mean is exactly ``mean`` and sample covariance (ddof=1) exactly ``scale @ scale.T``."""
    z = z - z.mean(0)
    chol = np.linalg.cholesky(np.cov(z, rowvar=False))
    white = z @ np.linalg.inv(chol).T  # sample covariance I
    return mean + white @ scale.T


def test_frechet_distance_of_identical_sets_is_zero() -> None:
    feats = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(feats).float(), torch.from_numpy(feats).float()) == pytest.approx(
        0.0, abs=1e-5)


def test_frechet_distance_of_diagonal_gaussians_by_hand() -> None:
    # C1 = diag(s1^2), C2 = diag(s2^2): Tr(C1 + C2 - 2 (C1 C2)^1/2) = sum (s1 - s2)^2
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 2.0, 1.0])
    a = _with_moments(rng.normal(size=(100, 3)), mu1, np.diag(s1))
    b = _with_moments(rng.normal(size=(150, 3)), mu2, np.diag(s2))
    expected = (1 + 0 + 4) + (4 + 0 + 0.25)  # ||mu1 - mu2||^2 + sum (s1 - s2)^2 = 9.25
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-8)
    assert frechet_distance(b, a) == pytest.approx(expected, abs=1e-8)


def test_frechet_distance_of_non_commuting_covariances() -> None:
    # Tr (C1 C2)^1/2 = sum of the square roots of the eigenvalues of C1 C2 (real and >= 0: it is similar
    # to C1^1/2 C2 C1^1/2), computed here without a matrix square root.
    rng = np.random.default_rng(2)
    l1, l2 = np.array([[2.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [-1.5, 0.5]])
    a = _with_moments(rng.normal(size=(80, 2)), np.array([0.5, 0.0]), l1)
    b = _with_moments(rng.normal(size=(90, 2)), np.array([0.0, 0.0]), l2)
    c1, c2 = l1 @ l1.T, l2 @ l2.T
    tr_sqrt = np.sqrt(np.linalg.eigvals(c1 @ c2).real).sum()
    expected = 0.25 + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-8)
    # the same covariance and a shifted mean: only ||mu1 - mu2||^2 remains
    assert frechet_distance(a, a + np.array([3.0, 4.0])) == pytest.approx(25.0, abs=1e-8)


def test_frechet_distance_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(np.zeros(5), np.zeros(5))


def test_kernel_distance_tiny_case_by_hand() -> None:
    # d = 1, x = (0, 1), y = (1, 2), k(u, v) = (u v + 1)^3; one subset holding both samples.
    # k_xx(0, 1) = 1 -> 2 / (2 * 1) = 1;  k_yy(1, 2) = 27 -> 27;
    # k_xy: (0,1) 1, (0,2) 1, (1,1) 8, (1,2) 27 -> 2 * 37 / 4 = 18.5;  MMD^2_u = 1 + 27 - 18.5 = 9.5
    mean, std = kernel_distance(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), subsets=1, subset_size=2)
    assert mean == pytest.approx(9.5)
    assert std == 0.0
    # d = 2 divides the dot product: x = (1, 1), (0, 0); y = (1, 0), (0, 1)
    # k_xx off-diagonal: (0 + 1)^3 = 1 -> 1;  k_yy off-diagonal: (0 / 2 + 1)^3 = 1 -> 1
    # k_xy: (1,1).(1,0) = 1 -> 1.5^3 = 3.375 (twice), the zero vector -> 1 (twice): 2 * 8.75 / 4 = 4.375
    mean, _ = kernel_distance(np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]),
                              subsets=1, subset_size=2)
    assert mean == pytest.approx(1 + 1 - 4.375)


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_shifted_ones() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kernel_distance(a, b, subsets=10, subset_size=200, seed=0)
    assert abs(same) < 0.01 and same_std > 0
    shifted, _ = kernel_distance(a, b + 1.0, subsets=10, subset_size=200, seed=0)
    assert shifted > 0.5 and shifted > 20 * abs(same)
    assert kernel_distance(a, b + 1.0, subsets=10, subset_size=200, seed=0)[0] == shifted  # seeded
    # the default subset size is min(1000, N_a, N_b)
    assert kernel_distance(a[:50], b, subsets=1, seed=3) == kernel_distance(a[:50], b, subsets=1, subset_size=50,
                                                                          seed=3)


def test_kernel_distance_rejects_a_subset_larger_than_a_set() -> None:
    with pytest.raises(ValueError, match="subset_size=11"):
        kernel_distance(np.zeros((10, 2)), np.zeros((20, 2)), subset_size=11)


def test_accuracy_with_se_by_hand() -> None:
    labels = torch.tensor([0, 1, 1, 1])
    # correct: 1, 1, 0, 1 -> p = 0.75; sample std (ddof=1) 0.5, se 0.5 / 2 = 0.25 = sqrt(p (1 - p) / (n - 1))
    acc, se = accuracy_with_se(torch.tensor([0, 1, 2, 1]), labels)
    assert acc == 0.75 and se == pytest.approx(0.25)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [-1.0, 2.0, 1.0]])
    assert accuracy_with_se(logits, labels) == (acc, se)
    with pytest.raises(ValueError, match="labels"):
        accuracy_with_se(torch.tensor([0, 1]), labels)
