"""What a generative method is measured by besides its features: reconstruction and its latent code.

For a method with ``Method.generative`` (VAE, beta-VAE, VQ-VAE), on the test split at the model's view
size, deterministically (the VAEs reconstruct from the posterior mean, no sampling):

- ``recon_mse``: mean squared error per RGB value in [0, 1] between image and reconstruction;
- ``mean_image_mse``: the same error of the mean train image used as every reconstruction, the
  baseline a model that ignored its input would reach; ``recon_mse_ratio`` is their ratio;
- VAEs: ``kl`` (nats per image, Kingma & Welling Appendix B) and ``active_units``, the latent
  dimensions whose posterior mean varies across images, Cov_x(E_q[z_d]) > 0.01 (Burda, Grosse,
  Salakhutdinov 2016, Sec. 5.2), the quantity the beta sweep trades against reconstruction;
- VQ-VAE: ``perplexity`` of the test codes (exp of the entropy of their frequencies) and
  ``codes_used``, the number of codebook entries any test position takes.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from selfsup.augment.views import EvalTransform
from selfsup.data.store import images_tensor
from selfsup.methods import Method

ACTIVE_UNIT_VARIANCE = 0.01


@torch.no_grad()
def _target(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) images at ``size`` in [0, 1], as the model sees them before normalisation."""
    identity = EvalTransform(size, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).to(device)
    return identity(images_tensor(images).to(device))


@torch.no_grad()
def generative_metrics(method: Method, train_images: np.ndarray, test_images: np.ndarray,
                       transform: EvalTransform, device: torch.device, batch_size: int = 512) -> dict[str, float]:
    """The reconstruction and latent-code metrics of a generative method on ``test_images``."""
    method.eval().to(device)
    transform = transform.to(device)
    size = transform.size
    mean_image = torch.zeros(3, size, size, device=device)
    for start in range(0, len(train_images), batch_size):
        mean_image += _target(train_images[start : start + batch_size], size, device).sum(0)
    mean_image /= len(train_images)
    sq_error = mean_sq_error = 0.0
    extras: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(test_images), batch_size), desc="reconstructions", leave=False):
        chunk = test_images[start : start + batch_size]
        target = _target(chunk, size, device)
        recon, extra = method.reconstruct(transform(images_tensor(chunk).to(device)))
        sq_error += (recon.float() - target).pow(2).sum().item()
        mean_sq_error += (mean_image - target).pow(2).sum().item()
        for key, value in extra.items():
            extras.setdefault(key, []).append(value.float().cpu() if value.is_floating_point() else value.cpu())
    n_values = len(test_images) * 3 * size * size
    metrics = {"recon_mse": sq_error / n_values, "mean_image_mse": mean_sq_error / n_values}
    metrics["recon_mse_ratio"] = metrics["recon_mse"] / metrics["mean_image_mse"]
    if "kl" in extras:
        metrics["kl"] = torch.cat(extras["kl"]).mean().item()
    if "mu" in extras:
        mu = torch.cat(extras["mu"])
        metrics["active_units"] = int((mu.var(dim=0) > ACTIVE_UNIT_VARIANCE).sum())
    if "codes" in extras:
        codes = torch.cat([c.flatten() for c in extras["codes"]])
        p = torch.bincount(codes).float() / len(codes)
        p = p[p > 0]
        metrics["perplexity"] = float(torch.exp(-(p * p.log()).sum()))
        metrics["codes_used"] = int(len(p))
    return metrics
