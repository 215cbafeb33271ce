"""Metrics for unpaired image translation scored against ground-truth renderings.

Images are float tensors (N, C, H, W) in ``[0, data_range]``; per-image metrics return (N,) float64
tensors (they are computed in float64).

Paired (output vs its ground-truth target):

- ``L1 = mean |x - y|`` over the C*H*W values of an image.
- ``PSNR = 10 log10(data_range^2 / MSE)`` dB with ``MSE = mean (x - y)^2``. Identical images have
  ``MSE = 0`` and an infinite PSNR, so PSNR is capped at :data:`PSNR_CAP_DB` (100 dB) to keep means
  finite.
- SSIM (Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
  structural similarity", IEEE TIP 2004, Eq. 13)::

      SSIM(x, y) = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))

  with local means, variances and covariance taken under an 11x11 Gaussian window (sigma 1.5,
  normalised to sum 1), ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, ``K1 = 0.01``, ``K2 = 0.03``,
  ``L = data_range``. The SSIM map is computed in the *valid* region only (no padding: the window
  never leaves the image, as in the authors' reference ``ssim.m`` with ``filter2(..., 'valid')``,
  so a 32x32 image gives a 22x22 map), averaged over the map, then over the channels. This equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=L)``, which filters with reflect padding and then crops
  the 5-pixel border before averaging. For constant images ``x = a``, ``y = b`` it reduces to
  ``(2ab + C1) / (a^2 + b^2 + C1)``.

:func:`paired_metrics` reports the mean of each over the images with its standard error
``se = std(ddof=1) / sqrt(n)``.

Distribution distances between feature sets (rows are samples), computed in float64:

- FID (Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs trained by a two time-scale
  update rule converge to a local Nash equilibrium", NeurIPS 2017): the Fréchet distance of the
  Gaussians fitted to the two sets, ``||mu_1 - mu_2||^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2})``
  (covariances with ``ddof=1``). The matrix square root is ``scipy.linalg.sqrtm`` (SciPy is
  always installed: scikit-learn requires it), as in the reference ``pytorch-fid``: a non-finite
  root is retried with ``1e-6 I`` added to both covariances, and the tiny imaginary part that
  rounding leaves is dropped.
- KID (Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018): the unbiased
  estimate of MMD^2 with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``::

      MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
                - 2 sum_{i, j} k(x_i, y_j) / m^2

  over ``subsets`` random subsets of ``m`` rows drawn without replacement from each set; the mean
  and standard deviation (``ddof=0``) over the subsets are reported, as in the paper's code.

The feature space is the project's judge network (:mod:`selfsup.translate.judge`) unless
torchvision's Inception-v3 weights are supplied, so values are comparable within this project
only, not with published FID/KID numbers (those use the TF-Inception pool3 features).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
FID_EPS = 1e-6
KID_SUBSET_SIZE = 1000


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 4 or x.shape != y.shape or len(x) == 0:
        raise ValueError(f"expected two (N, C, H, W) tensors of the same shape with N >= 1, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    return x.detach().to(torch.float64), y.detach().to(torch.float64)


def l1_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each image pair: (N,)."""
    x, y = _check_pair(x, y)
    return (x - y).abs().flatten(1).mean(1)


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image pair, capped at :data:`PSNR_CAP_DB`: (N,)."""
    x, y = _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(1)
    floor = data_range ** 2 * 10.0 ** (-PSNR_CAP_DB / 10.0)  # the MSE at which PSNR reaches the cap
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(floor))


def _valid_blur_matrix(size: int) -> torch.Tensor:
    """(size - 10, size) float64 matrix whose row i holds the 11-tap Gaussian at columns i .. i + 10."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * SSIM_SIGMA ** 2))
    out = size - SSIM_WINDOW + 1
    m = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        m[i, i:i + SSIM_WINDOW] = g / g.sum()
    return m


def _blur(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ t @ cols`` per image and channel (the separable Gaussian filter), as two large matrix products."""
    n, c, h, w = t.shape
    t = (t.reshape(-1, w) @ cols).reshape(n, c, h, -1).transpose(2, 3)  # (N, C, W', H)
    return (t.reshape(-1, h) @ rows.T).reshape(n, c, -1, len(rows)).transpose(2, 3)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image pair (valid-region Gaussian window, mean over the map and channels): (N,)."""
    x, y = _check_pair(x, y)
    h, w = x.shape[2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    rows, cols = _valid_blur_matrix(h), _valid_blur_matrix(w).T
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, rows, cols), _blur(y, rows, cols)
    var_x = _blur(x * x, rows, cols) - mu_x ** 2
    var_y = _blur(y * y, rows, cols) - mu_y ** 2
    cov_xy = _blur(x * y, rows, cols) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(2).mean(2).mean(1)


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    se = values.std(correction=1).item() / math.sqrt(n) if n > 1 else float("nan")
    return values.mean().item(), se


def paired_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Mean L1, PSNR and SSIM of outputs vs targets in [0, 1], each with its standard error.

    Keys: ``l1, l1_se, psnr, psnr_se, ssim, ssim_se``; ``se = std(ddof=1) / sqrt(n)`` (NaN for n = 1).
    """
    result: dict[str, float] = {}
    for name, fn in (("l1", l1_per_image), ("psnr", psnr_per_image), ("ssim", ssim_per_image)):
        result[name], result[f"{name}_se"] = _mean_se(fn(outputs, targets))
    return result


def _as_features(feats: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix with N >= 2, got shape {arr.shape}")
    return arr


def _check_dims(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the feature sets have different dimensions: {a.shape[1]} and {b.shape[1]}")


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """FID: Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    _check_dims(a, b)
    mu1, mu2 = a.mean(0), b.mean(0)
    cov1, cov2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(cov1)) * FID_EPS
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the square root of C1 C2 has an imaginary part of {np.abs(covmean.imag).max():.3g}: "
                             f"the covariances are too ill-conditioned (use more samples than the {len(cov1)} "
                             f"feature dimensions)")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray, subsets: int = 10,
                    subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID: (mean, std) over ``subsets`` random subsets of the unbiased MMD^2 (cubic polynomial kernel).

    ``subset_size`` defaults to ``min(1000, N_a, N_b)``; a larger value than either set holds is an error.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    _check_dims(a, b)
    m = min(KID_SUBSET_SIZE, len(a), len(b)) if subset_size is None else subset_size
    if not 2 <= m <= min(len(a), len(b)):
        raise ValueError(f"subset_size={m} must be between 2 and the smaller set's size ({min(len(a), len(b))})")
    if subsets < 1:
        raise ValueError(f"subsets={subsets} must be at least 1")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[s] = within - 2.0 * k_xy.sum() / (m * m)
    return float(values.mean()), float(values.std())


def accuracy_with_se(pred: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, standard error) of predictions: class indices (N,) or logits (N, K), the arg-max.

    ``se = std(ddof=1) / sqrt(n)`` of the 0/1 correctness, i.e. ``sqrt(p (1 - p) / (n - 1))``, as in
    :func:`paired_metrics` (NaN for n = 1).
    """
    if pred.dim() == 2:
        pred = pred.argmax(1)
    if pred.shape != labels.shape or pred.dim() != 1 or len(pred) == 0:
        raise ValueError(f"expected (N,) predictions (or (N, K) logits) and (N,) labels, got "
                         f"{tuple(pred.shape)} and {tuple(labels.shape)}")
    return _mean_se((pred.cpu() == labels.cpu()).to(torch.float64))
